#include "cmdline.h"

#include "lib.h"

const char *cmdline_find(const char *cmdline, const char *key, size_t *len)
{
	size_t klen = strlen(key);
	const char *found = NULL;
	const char *p = cmdline;

	while (*p) {
		const char *w, *e;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		w = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		e = p;
		if ((size_t)(e - w) > klen && !strncmp(w, key, klen) && w[klen] == '=') {
			found = w + klen + 1;
			*len = (size_t)(e - found);
		}
	}
	return found;
}

int cmdline_get_u64(const char *cmdline, const char *key, bool allow_suffix, uint64_t *out)
{
	size_t len;
	const char *v = cmdline_find(cmdline, key, &len);

	if (!v)
		return 0;
	return parse_u64(v, len, allow_suffix, out) ? 1 : -1;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * dmemfs for Debian's 6.1 kernel: the user-visible interface of Tencent's
 * "Direct Memory filesystem" series (never merged) as an out-of-tree module.
 *
 * The memory comes from ranges reserved at boot with memmap=SIZE$ADDR and
 * named to the module with region=SIZE@ADDR.  Such ranges have no struct
 * page and stay RAM in the firmware e820, so KVM treats their pfns as RAM.
 * Files are sized with ftruncate to whole dpages; a fault allocates a
 * dpage, zeroes it and maps it with one PUD (1 GiB), PMD (2 MiB) or PTE.
 *
 * Why the mappings look the way they do (see the project's research notes):
 *  - 6.1 only calls ->huge_fault for a file VMA that is DAX, so the inode
 *    carries S_DAX; nothing is ever stored in its page cache.
 *  - gup-fast dereferences the struct page of any huge leaf that lacks the
 *    devmap bit, so pfns are inserted as PFN_DEV|PFN_MAP; GUP then fails
 *    cleanly (O_DIRECT into such memory gets EFAULT).
 *  - 6.1's mprotect and mremap clear a PUD leaf as "bad", so both are
 *    refused, as is any split inside a dpage.
 *
 * A dpage memory failure is injected through debugfs dmem/inject: the dpage
 * is retired for good, unmapped everywhere (KVM follows through its MMU
 * notifier) and every process mapping it gets BUS_MCEERR_AO; a later access
 * gets BUS_MCEERR_AR.  si_addr is the dpage's start in that mapping and
 * si_addr_lsb is PAGE_SHIFT, the original series' rule.
 */
#define pr_fmt(fmt) "dmem: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/pagemap.h>
#include <linux/mm.h>
#include <linux/huge_mm.h>
#include <linux/pfn_t.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/xarray.h>
#include <linux/bitmap.h>
#include <linux/slab.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/statfs.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/rmap.h>
#include <linux/mman.h>
#include <asm/e820/api.h>

#define DMEMFS_MAGIC		0x2ace90c6
#define DMEM_MAX_REGIONS	8
#define DMEM_MAX_POISON		64
#define DMEM_REGION_ALIGN	(1UL << 30)

struct dmem_region {
	phys_addr_t start;
	phys_addr_t size;
	void *kaddr;		/* memremap(WB): zeroing, and the WB memtype */
};

/*
 * All allocator state.  One dpage size exists system-wide: it is fixed by
 * the first mount and can only change once nothing is mounted or allocated.
 */
struct dmem_pool {
	struct mutex lock;
	struct dmem_region regions[DMEM_MAX_REGIONS];
	unsigned int nr_regions;
	unsigned int dpage_shift;	/* 0 until the first mount */
	unsigned long total;		/* dpages over all regions */
	unsigned long nr_free;
	unsigned long nr_error;
	unsigned long *used;		/* allocated or retired */
	unsigned long *error;		/* retired after a memory failure */
	struct address_space **owner;	/* which file holds each dpage */
	pgoff_t *owner_index;		/* and at which dpage index */
	unsigned int nr_sb;
	/* Failed physical addresses survive a change of dpage size. */
	phys_addr_t poison[DMEM_MAX_POISON];
	unsigned int nr_poison;
	atomic64_t faults[3];		/* PTE, PMD, PUD mappings made */
	atomic64_t sigbus_ao, sigbus_ar;
	struct dentry *debugfs;
};

static struct dmem_pool pool = {
	.lock = __MUTEX_INITIALIZER(pool.lock),
};

enum { FAULT_PTE, FAULT_PMD, FAULT_PUD };

/* Per-file state: dpage index -> global dpage number (xa value). */
struct dmemfs_file {
	struct xarray dpages;
};

static char *region[DMEM_MAX_REGIONS];
static int nr_region_param;
module_param_array(region, charp, &nr_region_param, 0444);
MODULE_PARM_DESC(region, "SIZE@ADDR of a memmap=SIZE$ADDR reservation, 1 GiB aligned (up to 8)");

static bool early_kill;
module_param(early_kill, bool, 0644);
MODULE_PARM_DESC(early_kill,
		 "signal processes without PR_MCE_KILL_EARLY at inject time too (the kernel's vm.memory_failure_early_kill is not exported)");

static inline unsigned long dpage_size(void)
{
	return 1UL << pool.dpage_shift;
}

/* The region holding global dpage nr, and the dpage's byte offset in it. */
static struct dmem_region *dpage_region(unsigned long nr, size_t *off)
{
	unsigned int i;

	for (i = 0; i < pool.nr_regions; i++) {
		unsigned long n = pool.regions[i].size >> pool.dpage_shift;

		if (nr < n) {
			*off = (size_t)nr << pool.dpage_shift;
			return &pool.regions[i];
		}
		nr -= n;
	}
	return NULL;
}

static phys_addr_t dpage_phys(unsigned long nr)
{
	size_t off;
	struct dmem_region *r = dpage_region(nr, &off);

	return r ? r->start + off : 0;
}

static void *dpage_kaddr(unsigned long nr)
{
	size_t off;
	struct dmem_region *r = dpage_region(nr, &off);

	return r ? r->kaddr + off : NULL;
}

/* The global dpage number holding phys, or -1 when phys is not dmem. */
static long dpage_of_phys(phys_addr_t phys)
{
	unsigned long base = 0;
	unsigned int i;

	for (i = 0; i < pool.nr_regions; i++) {
		struct dmem_region *r = &pool.regions[i];

		if (phys >= r->start && phys - r->start < r->size)
			return base + ((phys - r->start) >> pool.dpage_shift);
		base += r->size >> pool.dpage_shift;
	}
	return -1;
}

static void pool_free_maps(void)
{
	bitmap_free(pool.used);
	bitmap_free(pool.error);
	kvfree(pool.owner);
	kvfree(pool.owner_index);
	pool.used = pool.error = NULL;
	pool.owner = NULL;
	pool.owner_index = NULL;
	pool.total = pool.nr_free = pool.nr_error = 0;
}

/* Called with pool.lock held, nothing mounted and nothing allocated. */
static int pool_set_shift(unsigned int shift)
{
	unsigned long total = 0, nr;
	unsigned int i;

	if (pool.dpage_shift == shift)
		return 0;
	pool_free_maps();
	pool.dpage_shift = shift;
	for (i = 0; i < pool.nr_regions; i++)
		total += pool.regions[i].size >> shift;
	pool.used = bitmap_zalloc(total, GFP_KERNEL);
	pool.error = bitmap_zalloc(total, GFP_KERNEL);
	pool.owner = kvcalloc(total, sizeof(*pool.owner), GFP_KERNEL);
	pool.owner_index = kvcalloc(total, sizeof(*pool.owner_index), GFP_KERNEL);
	if (!pool.used || !pool.error || !pool.owner || !pool.owner_index) {
		pool_free_maps();
		pool.dpage_shift = 0;
		return -ENOMEM;
	}
	pool.total = total;
	for (i = 0; i < pool.nr_poison; i++) {
		long d = dpage_of_phys(pool.poison[i]);

		if (d >= 0 && !test_bit(d, pool.error)) {
			set_bit(d, pool.error);
			set_bit(d, pool.used);
			pool.nr_error++;
		}
	}
	nr = 0;
	for (i = 0; i < total; i++)
		nr += !test_bit(i, pool.used);
	pool.nr_free = nr;
	return 0;
}

/* Called with pool.lock held.  Returns the dpage number or -ENOSPC. */
static long pool_alloc(struct address_space *mapping, pgoff_t index)
{
	unsigned long nr = find_first_zero_bit(pool.used, pool.total);

	if (nr >= pool.total)
		return -ENOSPC;
	set_bit(nr, pool.used);
	pool.owner[nr] = mapping;
	pool.owner_index[nr] = index;
	pool.nr_free--;
	return nr;
}

/* Called with pool.lock held.  A retired dpage never comes back. */
static void pool_release(unsigned long nr)
{
	pool.owner[nr] = NULL;
	if (test_bit(nr, pool.error))
		return;
	clear_bit(nr, pool.used);
	pool.nr_free++;
}

/* Zero a dpage before its first use: it holds a previous owner's data. */
static void dpage_zero(unsigned long nr)
{
	char *p = dpage_kaddr(nr);
	size_t off, step = min_t(size_t, dpage_size(), SZ_2M);

	for (off = 0; off < dpage_size(); off += step) {
		memset(p + off, 0, step);
		cond_resched();
	}
}

/* Free every dpage of the file at or beyond dpage index from. */
static void dmemfs_free_from(struct inode *inode, pgoff_t from)
{
	struct dmemfs_file *df = inode->i_private;
	unsigned long index;
	void *entry;

	mutex_lock(&pool.lock);
	xa_for_each_start(&df->dpages, index, entry, from) {
		pool_release(xa_to_value(entry));
		xa_erase(&df->dpages, index);
	}
	mutex_unlock(&pool.lock);
}

/* ---- memory failure -------------------------------------------------- */

struct dmem_victim {
	struct task_struct *task;
	unsigned long uaddr;
};

/*
 * The thread the kernel's memory-failure code would pick for an early
 * (action optional) kill: one that asked with PR_MCE_KILL_EARLY, else any
 * thread when early_kill is set, else none.  Called under rcu_read_lock.
 */
static struct task_struct *early_kill_thread(struct task_struct *p)
{
	struct task_struct *t;

	for_each_thread(p, t) {
		if (t->flags & PF_MCE_PROCESS) {
			if (t->flags & PF_MCE_EARLY)
				return t;
		} else if (early_kill) {
			return t;
		}
	}
	return NULL;
}

/* Where mm maps the dpage at file dpage index `index`, or 0. */
static unsigned long dpage_uaddr_in(struct mm_struct *mm,
				    struct address_space *mapping, pgoff_t index)
{
	pgoff_t first = index << (pool.dpage_shift - PAGE_SHIFT);
	struct vm_area_struct *vma;
	unsigned long addr = 0, uaddr = 0;

	mmap_read_lock(mm);
	while ((vma = find_vma(mm, addr))) {
		pgoff_t pages = vma_pages(vma);

		addr = vma->vm_end;
		if (!vma->vm_file || vma->vm_file->f_mapping != mapping)
			continue;
		/* mmap and may_split keep VMA starts on dpage boundaries */
		if (first >= vma->vm_pgoff && first < vma->vm_pgoff + pages) {
			uaddr = vma->vm_start +
				((first - vma->vm_pgoff) << PAGE_SHIFT);
			break;
		}
	}
	mmap_read_unlock(mm);
	return uaddr;
}

/*
 * Collect (thread, address) for every process that maps the dpage at file
 * dpage index `index` of mapping.  The kernel's own reverse map walk
 * (vma_interval_tree_*) is not exported to modules, so walk the processes:
 * a VMM host has few, and VM_DONTCOPY keeps children out.
 */
static int collect_victims(struct address_space *mapping, pgoff_t index,
			   struct dmem_victim *v, int max)
{
	struct task_struct **procs, *p, *t;
	int nprocs = 0, cap = 0, n = 0, i;

	rcu_read_lock();
	for_each_process(p)
		cap++;
	rcu_read_unlock();
	procs = kvmalloc_array(cap, sizeof(*procs), GFP_KERNEL);
	if (!procs)
		return 0;
	rcu_read_lock();
	for_each_process(p) {
		if (nprocs == cap)
			break;
		if (p->flags & PF_KTHREAD)
			continue;
		get_task_struct(p);
		procs[nprocs++] = p;
	}
	rcu_read_unlock();

	for (i = 0; i < nprocs; i++) {
		struct mm_struct *mm = get_task_mm(procs[i]);
		unsigned long uaddr = 0;

		if (mm) {
			uaddr = dpage_uaddr_in(mm, mapping, index);
			mmput(mm);
		}
		if (uaddr && n < max) {
			rcu_read_lock();
			t = early_kill_thread(procs[i]);
			if (t) {
				get_task_struct(t);
				v[n].task = t;
				v[n].uaddr = uaddr;
				n++;
			}
			rcu_read_unlock();
		}
		put_task_struct(procs[i]);
	}
	kvfree(procs);
	return n;
}

/* Retire the dpage holding phys and tell everyone who maps it. */
static int dmem_inject(phys_addr_t phys)
{
	struct dmem_victim v[16];
	struct address_space *mapping = NULL;
	struct inode *inode = NULL;
	pgoff_t index = 0;
	long nr;
	int n, i;

	mutex_lock(&pool.lock);
	if (!pool.dpage_shift) {
		mutex_unlock(&pool.lock);
		pr_warn("inject %pa: no dpage size yet (mount dmemfs first)\n", &phys);
		return -ENODEV;
	}
	nr = dpage_of_phys(phys);
	if (nr < 0) {
		mutex_unlock(&pool.lock);
		pr_warn("inject %pa: not in any dmem region\n", &phys);
		return -EINVAL;
	}
	if (pool.nr_poison < DMEM_MAX_POISON)
		pool.poison[pool.nr_poison++] = phys;
	if (!test_and_set_bit(nr, pool.error)) {
		pool.nr_error++;
		if (!test_and_set_bit(nr, pool.used))
			pool.nr_free--;
	}
	if (pool.owner[nr]) {
		mapping = pool.owner[nr];
		index = pool.owner_index[nr];
		inode = igrab(mapping->host);
	}
	mutex_unlock(&pool.lock);

	pr_err("memory failure at %pa: dpage %ld (%pa + %lu MiB) retired%s\n",
	       &phys, nr, &phys, dpage_size() >> 20,
	       inode ? ", unmapping it and signalling its users" : " (unused)");
	if (!inode)
		return 0;

	/* Zap every user mapping; KVM drops its own through the notifier. */
	unmap_mapping_range(mapping, (loff_t)index << pool.dpage_shift,
			    dpage_size(), 1);
	n = collect_victims(mapping, index, v, ARRAY_SIZE(v));
	for (i = 0; i < n; i++) {
		pr_err("sending SIGBUS (BUS_MCEERR_AO) to %s:%d at %#lx\n",
		       v[i].task->comm, task_pid_nr(v[i].task), v[i].uaddr);
		send_sig_mceerr(BUS_MCEERR_AO, (void __user *)v[i].uaddr,
				PAGE_SHIFT, v[i].task);
		atomic64_inc(&pool.sigbus_ao);
		put_task_struct(v[i].task);
	}
	iput(inode);
	return 0;
}

/* ---- faults ---------------------------------------------------------- */

static const unsigned long fault_size[] = {
	[FAULT_PTE] = PAGE_SIZE, [FAULT_PMD] = PMD_SIZE, [FAULT_PUD] = PUD_SIZE,
};

static vm_fault_t dmemfs_fault_level(struct vm_fault *vmf, int level)
{
	struct vm_area_struct *vma = vmf->vma;
	struct inode *inode = file_inode(vma->vm_file);
	struct dmemfs_file *df = inode->i_private;
	unsigned long map = fault_size[level], addr, dsize;
	bool write = vma->vm_flags & VM_WRITE;
	phys_addr_t phys;
	pgoff_t index;
	vm_fault_t ret;
	loff_t off;
	void *entry;
	pfn_t pfn;
	long nr;

	dsize = dpage_size();
	if (map > dsize)
		return VM_FAULT_FALLBACK;
	addr = vmf->address & ~(map - 1);
	if (addr < vma->vm_start || addr + map > vma->vm_end)
		return VM_FAULT_FALLBACK;
	off = ((loff_t)vma->vm_pgoff << PAGE_SHIFT) + (addr - vma->vm_start);
	if (off & (map - 1))
		return VM_FAULT_FALLBACK;	/* file offset not congruent */

	filemap_invalidate_lock_shared(inode->i_mapping);
	if (off >= i_size_read(inode)) {
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	index = off >> pool.dpage_shift;

	mutex_lock(&pool.lock);
	entry = xa_load(&df->dpages, index);
	if (entry) {
		nr = xa_to_value(entry);
	} else {
		nr = pool_alloc(inode->i_mapping, index);
		if (nr >= 0 && xa_err(xa_store(&df->dpages, index,
					       xa_mk_value(nr), GFP_KERNEL))) {
			pool_release(nr);
			nr = -ENOMEM;
		}
		if (nr >= 0)
			dpage_zero(nr);
	}
	if (nr >= 0 && test_bit(nr, pool.error)) {
		unsigned long uaddr = vma->vm_start +
			(((loff_t)index << pool.dpage_shift) -
			 ((loff_t)vma->vm_pgoff << PAGE_SHIFT));

		mutex_unlock(&pool.lock);
		/* Before do_sigbus's own, which then stays queued behind it:
		 * the address is the dpage start, as the original sends. */
		send_sig_mceerr(BUS_MCEERR_AR, (void __user *)uaddr, PAGE_SHIFT,
				current);
		atomic64_inc(&pool.sigbus_ar);
		ret = VM_FAULT_HWPOISON;
		goto out;
	}
	mutex_unlock(&pool.lock);
	if (nr < 0) {
		pr_warn_ratelimited("%s:%d: no free dpage for %pD at offset %lld\n",
				    current->comm, task_pid_nr(current),
				    vma->vm_file, off);
		ret = nr == -ENOMEM ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
		goto out;
	}

	phys = dpage_phys(nr) + (off & (dsize - 1));
	pfn = phys_to_pfn_t(phys, PFN_DEV | PFN_MAP);
	switch (level) {
	case FAULT_PUD:
		ret = vmf_insert_pfn_pud(vmf, pfn, write);
		break;
	case FAULT_PMD:
		ret = vmf_insert_pfn_pmd(vmf, pfn, write);
		break;
	default:
		/* Special, not devmap: vm_normal_page() would take a devmap
		 * PTE for a struct page that does not exist. */
		ret = vmf_insert_pfn(vma, vmf->address & PAGE_MASK,
				     PHYS_PFN(phys));
		break;
	}
	if (ret == VM_FAULT_NOPAGE)
		atomic64_inc(&pool.faults[level]);
out:
	filemap_invalidate_unlock_shared(inode->i_mapping);
	return ret;
}

static vm_fault_t dmemfs_huge_fault(struct vm_fault *vmf,
				    enum page_entry_size pe_size)
{
	switch (pe_size) {
	case PE_SIZE_PUD:
		return dmemfs_fault_level(vmf, FAULT_PUD);
	case PE_SIZE_PMD:
		return dmemfs_fault_level(vmf, FAULT_PMD);
	default:
		return dmemfs_fault_level(vmf, FAULT_PTE);
	}
}

static vm_fault_t dmemfs_fault(struct vm_fault *vmf)
{
	return dmemfs_fault_level(vmf, FAULT_PTE);
}

/* A split inside a dpage would leave half a huge pfn mapping. */
static int dmemfs_may_split(struct vm_area_struct *vma, unsigned long addr)
{
	return (addr & (dpage_size() - 1)) ? -EINVAL : 0;
}

/* 6.1 clears a PUD leaf as "bad" on mremap: the data would stay, the
 * mapping would not.  Refused (the kernel has logged "bad pud" already). */
static int dmemfs_mremap(struct vm_area_struct *vma)
{
	return -EINVAL;
}

/* 6.1's change_pud_range() would clear a PUD leaf with pud_ERROR. */
static int dmemfs_mprotect(struct vm_area_struct *vma, unsigned long start,
			   unsigned long end, unsigned long newflags)
{
	return -EACCES;
}

/* smaps cannot walk a pfn mapping; KernelPageSize shows the dpage size. */
static unsigned long dmemfs_pagesize(struct vm_area_struct *vma)
{
	return dpage_size();
}

static const struct vm_operations_struct dmemfs_vm_ops = {
	.fault		= dmemfs_fault,
	.huge_fault	= dmemfs_huge_fault,
	.may_split	= dmemfs_may_split,
	.mremap		= dmemfs_mremap,
	.mprotect	= dmemfs_mprotect,
	.pagesize	= dmemfs_pagesize,
};

static int dmemfs_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long dsize = dpage_size();

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;	/* a COW pfn mapping cannot take huge leaves */
	if (((loff_t)vma->vm_pgoff << PAGE_SHIFT) & (dsize - 1))
		return -EINVAL;
	if ((vma->vm_end - vma->vm_start) & (dsize - 1))
		return -EINVAL;
	file_accessed(file);
	vma->vm_flags |= VM_PFNMAP | VM_DONTEXPAND | VM_DONTCOPY |
			 VM_DONTDUMP | VM_HUGEPAGE;
	vma->vm_ops = &dmemfs_vm_ops;
	return 0;
}

/* Place mappings on a dpage boundary so every dpage gets one leaf. */
static unsigned long dmemfs_get_unmapped_area(struct file *file,
					      unsigned long addr,
					      unsigned long len,
					      unsigned long pgoff,
					      unsigned long flags)
{
	unsigned long dsize = dpage_size(), raw;

	if (flags & MAP_FIXED)
		return (addr & (dsize - 1)) ? -EINVAL : addr;
	if (len > TASK_SIZE - dsize)
		return -ENOMEM;
	raw = current->mm->get_unmapped_area(file, 0, len + dsize, pgoff, flags);
	if (IS_ERR_VALUE(raw))
		return raw;
	return ALIGN(raw, dsize);
}

static const struct file_operations dmemfs_file_ops = {
	.mmap			= dmemfs_mmap,
	.get_unmapped_area	= dmemfs_get_unmapped_area,
	.llseek			= generic_file_llseek,
	.fsync			= noop_fsync,
};

/* ---- inodes ---------------------------------------------------------- */

static int dmemfs_setattr(struct user_namespace *mnt_userns,
			  struct dentry *dentry, struct iattr *iattr)
{
	struct inode *inode = d_inode(dentry);
	int ret;

	ret = setattr_prepare(mnt_userns, dentry, iattr);
	if (ret)
		return ret;
	if ((iattr->ia_valid & ATTR_SIZE) && S_ISREG(inode->i_mode)) {
		loff_t size = iattr->ia_size;

		if (size & (dpage_size() - 1))
			return -EINVAL;	/* files are whole dpages */
		filemap_invalidate_lock(inode->i_mapping);
		if (size < i_size_read(inode)) {
			unmap_mapping_range(inode->i_mapping, size, 0, 1);
			dmemfs_free_from(inode, size >> pool.dpage_shift);
		}
		i_size_write(inode, size);
		filemap_invalidate_unlock(inode->i_mapping);
	}
	setattr_copy(mnt_userns, inode, iattr);
	mark_inode_dirty(inode);
	return 0;
}

static const struct inode_operations dmemfs_file_iops = {
	.setattr	= dmemfs_setattr,
	.getattr	= simple_getattr,
};

static const struct inode_operations dmemfs_dir_iops;

static struct inode *dmemfs_new_inode(struct super_block *sb,
				      const struct inode *dir, umode_t mode)
{
	struct inode *inode = new_inode(sb);
	struct dmemfs_file *df;

	if (!inode)
		return NULL;
	inode->i_ino = get_next_ino();
	inode_init_owner(&init_user_ns, inode, dir, mode);
	inode->i_atime = inode->i_mtime = inode->i_ctime = current_time(inode);
	switch (mode & S_IFMT) {
	case S_IFREG:
		df = kzalloc(sizeof(*df), GFP_KERNEL);
		if (!df) {
			iput(inode);
			return NULL;
		}
		xa_init(&df->dpages);
		inode->i_private = df;
		inode->i_op = &dmemfs_file_iops;
		inode->i_fop = &dmemfs_file_ops;
		/* The one way to reach ->huge_fault on 6.1 (hugepage_vma_check). */
		inode->i_flags |= S_DAX;
		break;
	case S_IFDIR:
		inode->i_op = &dmemfs_dir_iops;
		inode->i_fop = &simple_dir_operations;
		inc_nlink(inode);
		break;
	default:
		iput(inode);
		return NULL;
	}
	return inode;
}

static int dmemfs_mknod(struct inode *dir, struct dentry *dentry, umode_t mode)
{
	struct inode *inode = dmemfs_new_inode(dir->i_sb, dir, mode);

	if (!inode)
		return -ENOSPC;
	d_instantiate(dentry, inode);
	dget(dentry);	/* pinned, as in ramfs: the dentry is the file */
	dir->i_mtime = dir->i_ctime = current_time(dir);
	return 0;
}

static int dmemfs_create(struct user_namespace *mnt_userns, struct inode *dir,
			 struct dentry *dentry, umode_t mode, bool excl)
{
	return dmemfs_mknod(dir, dentry, mode | S_IFREG);
}

static int dmemfs_mkdir(struct user_namespace *mnt_userns, struct inode *dir,
			struct dentry *dentry, umode_t mode)
{
	int ret = dmemfs_mknod(dir, dentry, mode | S_IFDIR);

	if (!ret)
		inc_nlink(dir);
	return ret;
}

static const struct inode_operations dmemfs_dir_iops = {
	.create		= dmemfs_create,
	.lookup		= simple_lookup,
	.unlink		= simple_unlink,
	.mkdir		= dmemfs_mkdir,
	.rmdir		= simple_rmdir,
	.rename		= simple_rename,
};

static void dmemfs_evict_inode(struct inode *inode)
{
	struct dmemfs_file *df = inode->i_private;

	truncate_inode_pages_final(&inode->i_data);
	if (df) {
		dmemfs_free_from(inode, 0);
		xa_destroy(&df->dpages);
		kfree(df);
		inode->i_private = NULL;
	}
	clear_inode(inode);
}

static int dmemfs_statfs(struct dentry *dentry, struct kstatfs *buf)
{
	mutex_lock(&pool.lock);
	buf->f_type = DMEMFS_MAGIC;
	buf->f_bsize = dpage_size();
	buf->f_blocks = pool.total;
	buf->f_bfree = buf->f_bavail = pool.nr_free;
	buf->f_namelen = NAME_MAX;
	mutex_unlock(&pool.lock);
	return 0;
}

static int dmemfs_show_options(struct seq_file *m, struct dentry *root)
{
	seq_printf(m, ",pagesize=%lx", dpage_size());
	return 0;
}

static const struct super_operations dmemfs_sops = {
	.statfs		= dmemfs_statfs,
	.drop_inode	= generic_delete_inode,
	.evict_inode	= dmemfs_evict_inode,
	.show_options	= dmemfs_show_options,
};

/* ---- mount ----------------------------------------------------------- */

struct dmemfs_ctx {
	unsigned int shift;
};

enum { OPT_PAGESIZE };

static const struct fs_parameter_spec dmemfs_params[] = {
	fsparam_string("pagesize", OPT_PAGESIZE),
	{}
};

static int dmemfs_parse_param(struct fs_context *fc, struct fs_parameter *param)
{
	struct dmemfs_ctx *ctx = fc->fs_private;
	struct fs_parse_result result;
	unsigned long long size;
	char *rest;
	int opt;

	opt = fs_parse(fc, dmemfs_params, param, &result);
	if (opt < 0)
		return opt;
	size = memparse(param->string, &rest);
	if (*rest || (size != PAGE_SIZE && size != PMD_SIZE && size != PUD_SIZE))
		return invalfc(fc, "pagesize=%s: only 4K, 2M or 1G", param->string);
	ctx->shift = __ffs64(size);
	return 0;
}

static int dmemfs_fill_super(struct super_block *sb, struct fs_context *fc)
{
	struct dmemfs_ctx *ctx = fc->fs_private;
	struct inode *root;
	int ret;

	mutex_lock(&pool.lock);
	if (pool.dpage_shift && pool.dpage_shift != ctx->shift &&
	    (pool.nr_sb || pool.nr_free + pool.nr_error != pool.total)) {
		mutex_unlock(&pool.lock);
		return invalfc(fc, "pagesize %#lx refused: dmemfs is in use with pagesize %#lx, and one dpage size exists system-wide",
			       1UL << ctx->shift, dpage_size());
	}
	ret = pool_set_shift(ctx->shift);
	if (!ret)
		pool.nr_sb++;
	mutex_unlock(&pool.lock);
	if (ret)
		return ret;
	sb->s_fs_info = &pool;	/* counted in nr_sb: kill_sb uncounts */

	sb->s_maxbytes = MAX_LFS_FILESIZE;
	sb->s_blocksize = PAGE_SIZE;
	sb->s_blocksize_bits = PAGE_SHIFT;
	sb->s_magic = DMEMFS_MAGIC;
	sb->s_op = &dmemfs_sops;
	sb->s_time_gran = 1;
	root = dmemfs_new_inode(sb, NULL, S_IFDIR | 0755);
	sb->s_root = d_make_root(root);
	return sb->s_root ? 0 : -ENOMEM;
}

static int dmemfs_get_tree(struct fs_context *fc)
{
	return get_tree_nodev(fc, dmemfs_fill_super);
}

static void dmemfs_free_fc(struct fs_context *fc)
{
	kfree(fc->fs_private);
}

static const struct fs_context_operations dmemfs_context_ops = {
	.free		= dmemfs_free_fc,
	.parse_param	= dmemfs_parse_param,
	.get_tree	= dmemfs_get_tree,
};

static int dmemfs_init_fs_context(struct fs_context *fc)
{
	struct dmemfs_ctx *ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	ctx->shift = PAGE_SHIFT;	/* the original's default */
	fc->fs_private = ctx;
	fc->ops = &dmemfs_context_ops;
	return 0;
}

static void dmemfs_kill_sb(struct super_block *sb)
{
	bool counted = sb->s_fs_info;	/* fill_super got past the pool */

	kill_litter_super(sb);
	if (counted) {
		mutex_lock(&pool.lock);
		pool.nr_sb--;
		mutex_unlock(&pool.lock);
	}
}

static struct file_system_type dmemfs_type = {
	.owner			= THIS_MODULE,
	.name			= "dmemfs",
	.init_fs_context	= dmemfs_init_fs_context,
	.parameters		= dmemfs_params,
	.kill_sb		= dmemfs_kill_sb,
};

/* ---- debugfs --------------------------------------------------------- */

enum dmem_stat {
	ST_SHIFT, ST_TOTAL, ST_FREE, ST_ERROR, ST_REGIONS, ST_REGISTERED,
	ST_UNALIGNED, ST_FAULT_PTE, ST_FAULT_PMD, ST_FAULT_PUD, ST_SIGBUS_AO,
	ST_SIGBUS_AR,
};

static const char *const dmem_stat_names[] = {
	[ST_SHIFT] = "dpage_shift", [ST_TOTAL] = "total_dpages",
	[ST_FREE] = "free_dpages", [ST_ERROR] = "error_dpages",
	[ST_REGIONS] = "region_num", [ST_REGISTERED] = "registered_pages",
	[ST_UNALIGNED] = "unaligned_pages", [ST_FAULT_PTE] = "faults_pte",
	[ST_FAULT_PMD] = "faults_pmd", [ST_FAULT_PUD] = "faults_pud",
	[ST_SIGBUS_AO] = "sigbus_ao", [ST_SIGBUS_AR] = "sigbus_ar",
};

static u64 dmem_stat(enum dmem_stat st)
{
	u64 v = 0;
	unsigned int i;

	mutex_lock(&pool.lock);
	switch (st) {
	case ST_SHIFT: v = pool.dpage_shift; break;
	case ST_TOTAL: v = pool.total; break;
	case ST_FREE: v = pool.nr_free; break;
	case ST_ERROR: v = pool.nr_error; break;
	case ST_REGIONS: v = pool.nr_regions; break;
	case ST_REGISTERED:
		for (i = 0; i < pool.nr_regions; i++)
			v += pool.regions[i].size >> PAGE_SHIFT;
		break;
	case ST_UNALIGNED: v = 0; break;	/* ranges are refused instead */
	case ST_FAULT_PTE: v = atomic64_read(&pool.faults[FAULT_PTE]); break;
	case ST_FAULT_PMD: v = atomic64_read(&pool.faults[FAULT_PMD]); break;
	case ST_FAULT_PUD: v = atomic64_read(&pool.faults[FAULT_PUD]); break;
	case ST_SIGBUS_AO: v = atomic64_read(&pool.sigbus_ao); break;
	case ST_SIGBUS_AR: v = atomic64_read(&pool.sigbus_ar); break;
	}
	mutex_unlock(&pool.lock);
	return v;
}

static int dmem_stat_show(struct seq_file *m, void *unused)
{
	seq_printf(m, "%llu\n", dmem_stat((uintptr_t)m->private));
	return 0;
}

static int dmem_stat_open(struct inode *inode, struct file *file)
{
	return single_open(file, dmem_stat_show, inode->i_private);
}

static const struct file_operations dmem_stat_fops = {
	.owner		= THIS_MODULE,
	.open		= dmem_stat_open,
	.read		= seq_read,
	.llseek		= seq_lseek,
	.release	= single_release,
};

/*
 * One line per dpage in use: which file (inode number) holds it at which
 * dpage index, and where it lies, so a test can aim dmem/inject at the
 * dpage behind a given file offset.
 */
static int dmem_dpages_show(struct seq_file *m, void *unused)
{
	unsigned long nr;

	mutex_lock(&pool.lock);
	for (nr = 0; nr < pool.total; nr++) {
		phys_addr_t phys = dpage_phys(nr);
		bool bad = test_bit(nr, pool.error);

		if (!pool.owner[nr] && !bad)
			continue;
		seq_printf(m, "dpage %lu phys %pa", nr, &phys);
		if (pool.owner[nr])
			seq_printf(m, " ino %lu index %lu",
				   pool.owner[nr]->host->i_ino,
				   pool.owner_index[nr]);
		seq_puts(m, bad ? " error\n" : "\n");
	}
	mutex_unlock(&pool.lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(dmem_dpages);

static ssize_t dmem_inject_write(struct file *file, const char __user *buf,
				 size_t count, loff_t *ppos)
{
	u64 phys;
	int ret;

	ret = kstrtou64_from_user(buf, count, 0, &phys);
	if (ret)
		return ret;
	ret = dmem_inject(phys);
	return ret ? ret : count;
}

static const struct file_operations dmem_inject_fops = {
	.owner	= THIS_MODULE,
	.write	= dmem_inject_write,
	.llseek	= noop_llseek,
};

static void dmem_debugfs_init(void)
{
	struct dentry *node;
	uintptr_t i;

	pool.debugfs = debugfs_create_dir("dmem", NULL);
	for (i = 0; i < ARRAY_SIZE(dmem_stat_names); i++)
		debugfs_create_file(dmem_stat_names[i], 0444, pool.debugfs,
				    (void *)i, &dmem_stat_fops);
	debugfs_create_file("inject", 0200, pool.debugfs, NULL,
			    &dmem_inject_fops);
	debugfs_create_file("dpages", 0444, pool.debugfs, NULL,
			    &dmem_dpages_fops);
	/* Regions are not mapped to NUMA nodes: all are reported on node 0. */
	node = debugfs_create_dir("node0", pool.debugfs);
	debugfs_create_file("total_dpages", 0444, node, (void *)ST_TOTAL,
			    &dmem_stat_fops);
	debugfs_create_file("free_dpages", 0444, node, (void *)ST_FREE,
			    &dmem_stat_fops);
}

/* ---- load ------------------------------------------------------------ */

/*
 * A range is usable only if it has no struct page (memmap=, whole
 * sections), is not System RAM to the running kernel, and is still RAM in
 * the firmware e820 (or KVM would treat its pfns as MMIO).
 */
static int dmem_region_check(phys_addr_t start, phys_addr_t size)
{
	phys_addr_t end = start + size, p;

	if (!size || !IS_ALIGNED(start, DMEM_REGION_ALIGN) ||
	    !IS_ALIGNED(size, DMEM_REGION_ALIGN)) {
		pr_err("region %pa+%pa refused: start and size must be 1 GiB aligned\n",
		       &start, &size);
		return -EINVAL;
	}
	for (p = start; p < end; p += PAGE_SIZE << PFN_SECTION_SHIFT) {
		if (pfn_valid(PHYS_PFN(p))) {
			pr_err("region %pa+%pa refused: %pa has a struct page (reserve the range with memmap=SIZE$ADDR)\n",
			       &start, &size, &p);
			return -EINVAL;
		}
	}
	if (region_intersects(start, size, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT) {
		pr_err("region %pa+%pa refused: part of it is System RAM in /proc/iomem\n",
		       &start, &size);
		return -EINVAL;
	}
	for (p = start; p < end; p += PAGE_SIZE) {
		if (!e820__mapped_raw_any(p, p + PAGE_SIZE, E820_TYPE_RAM)) {
			pr_err("region %pa+%pa refused: %pa is not RAM in the firmware e820 map\n",
			       &start, &size, &p);
			return -EINVAL;
		}
		if (!(p & (SZ_1G - 1)))
			cond_resched();
	}
	return 0;
}

static int dmem_region_add(const char *spec)
{
	struct dmem_region *r;
	phys_addr_t start, size, last;
	unsigned int i;
	char *rest;
	int ret;

	size = memparse(spec, &rest);
	if (*rest != '@') {
		pr_err("region=%s: not SIZE@ADDR\n", spec);
		return -EINVAL;
	}
	start = memparse(rest + 1, &rest);
	if (*rest) {
		pr_err("region=%s: not SIZE@ADDR\n", spec);
		return -EINVAL;
	}
	for (i = 0; i < pool.nr_regions; i++) {
		r = &pool.regions[i];
		if (start < r->start + r->size && r->start < start + size) {
			pr_err("region=%s overlaps another region\n", spec);
			return -EINVAL;
		}
	}
	ret = dmem_region_check(start, size);
	if (ret)
		return ret;
	r = &pool.regions[pool.nr_regions];
	r->kaddr = memremap(start, size, MEMREMAP_WB);
	if (!r->kaddr) {
		pr_err("region %pa+%pa: memremap(WB) failed\n", &start, &size);
		return -ENOMEM;
	}
	r->start = start;
	r->size = size;
	pool.nr_regions++;
	last = start + size - 1;
	pr_info("register region [%pa - %pa] on node 0.\n", &start, &last);
	return 0;
}

static void dmem_regions_remove(void)
{
	while (pool.nr_regions)
		memunmap(pool.regions[--pool.nr_regions].kaddr);
}

static int __init dmemfs_init(void)
{
	int i, ret;

	if (!nr_region_param) {
		pr_err("no region=SIZE@ADDR given: nothing to manage\n");
		return -EINVAL;
	}
	for (i = 0; i < nr_region_param; i++) {
		ret = dmem_region_add(region[i]);
		if (ret) {
			dmem_regions_remove();
			return ret;
		}
	}
	ret = register_filesystem(&dmemfs_type);
	if (ret) {
		dmem_regions_remove();
		return ret;
	}
	dmem_debugfs_init();
	return 0;
}

static void __exit dmemfs_exit(void)
{
	debugfs_remove_recursive(pool.debugfs);
	unregister_filesystem(&dmemfs_type);
	pool_free_maps();
	dmem_regions_remove();
}

module_init(dmemfs_init);
module_exit(dmemfs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("dmemfs: guest memory without struct page, on memmap= reservations");

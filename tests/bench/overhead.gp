# Host overhead per GiB of guest RAM, one stacked bar per backend.
# Called by tests/bench/overhead-report.sh with
#   gnuplot -e "datafile='...'; outfile='...'" overhead.gp
# datafile columns: label, VMM page tables, KVM page tables, struct page
# (KiB per GiB of guest RAM); computed-only rows carry 0 for the measured
# columns.
if (!exists("datafile")) datafile = 'build/overhead/overhead.dat'
if (!exists("outfile")) outfile = 'build/overhead/overhead.svg'

set terminal svg size 1100,540 dynamic enhanced font "sans,12" background rgb "white"
set output outfile
set title "Host overhead per GiB of guest RAM (page tables measured; struct page measured where the report says so)"
set ylabel "KiB per GiB of guest RAM"
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.7
set key top right
set grid ytics
set yrange [0:*]
set xtics noenhanced font ",10"
set xlabel "* struct page only: page tables not measured for this row"
plot datafile using 2:xtic(1) title "VMM page tables (VmPTE)" lc rgb "#4477aa", \
     '' using 3 title "KVM page tables (SecPageTables)" lc rgb "#ee6677", \
     '' using 4 title "struct page" lc rgb "#228833"

# validation.gp — the simulator's predicted iteration times against the GPU's (issue 15):
# filled points, the measured cost model ([cost] model = measured); open grey points, the
# roofline with its assumed efficiencies; the line y = x. Drawn by kvprof_report.py after
# paper-figures/common.gp, with D = the data directory (points.dat: one block per kind:
# measured_ms predicted_ms roofline_ms).
set xlabel 'measured iteration time (ms)'
set ylabel 'predicted iteration time (ms)'
set logscale xy
set format x '10^{%T}'
set format y '10^{%T}'
set key top left
LO = 1e300; HI = 0
do for [c=1:3] {
  stats D.'points.dat' using c nooutput
  LO = STATS_min < LO ? STATS_min : LO
  HI = STATS_max > HI ? STATS_max : HI
}
LO = LO / 2; HI = HI * 2
set xrange [LO:HI]
set yrange [LO:HI]
set grid xtics ytics lt 1 lw 1 lc rgb '#e4e4e4'
plot x with lines dt 2 lw 1.5 lc rgb '#555555' title 'predicted = measured', \
     for [i=0:3] D.'points.dat' index i using 1:3 with points pt 6 ps 0.9*PSF lc rgb '#999999' \
       title (i == 0 ? 'roofline (assumed efficiencies)' : ''), \
     for [i=0:3] D.'points.dat' index i using 1:2 with points lt i+1 title columnheader(1)

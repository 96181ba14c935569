# Session arrival rate (LLaMA-2-13B): hit rate (left) and mean TTFT with and without queueing
# (right) of CachedAttention (HBM + DRAM + SSD) at 0.5 - 2 times the calibrated offered load,
# as the paper sweeps 0.5 - 2.0 sessions/s around its 1.0. Diamonds: the paper's numbers at 0.5
# and 2.0 (placed at x0.5 and x2). RE is not run (it is not stationary above the calibrated
# rate, which is where that rate comes from).
#@needs ca-arrival
#@data caption.gp caption experiments/cachedattention/base.ini ca-arrival
#@data hit.dat series ca-arrival --x load --y hist_hit_rate --y-scale 100
#@data ttft.dat series ca-arrival --x load --y ttft_mean_s
#@data ttftnq.dat series ca-arrival --x load --y ttft_noqueue_mean_s
#@data hit_paper.dat claims --ids abl.arrival.hit.0.5,abl.arrival.hit.2.0 --x 0.5,2.0 --scale 100
#@data ttft_paper.dat claims --ids abl.arrival.ttft.0.5,abl.arrival.ttft.2.0 --x 0.5,2.0

load D.'caption.gp'
set xlabel 'offered load (x the calibrated rate; the paper: sessions/s)'
set xrange [0.35:2.15]
set xtics 0.5,0.5,2.0
PL = 0.10; PR = 0.98; PB = 0.18; PT = 0.88; GX = 0.12
set multiplot
eval panel(0, 2, 0, 1)
set ylabel 'hit rate (%)'
set yrange [0:100]
plot D.'hit.dat' using 1:2 with linespoints lt 1, D.'hit_paper.dat' using 1:2 with points @PAPER
eval panel(1, 2, 0, 1)
set ylabel 'mean TTFT (s)'
set yrange [0:*]
plot D.'ttft.dat' using 1:2 with linespoints lt 1, D.'ttftnq.dat' using 1:2 with linespoints lt 1 dt 2, \
     D.'ttft_paper.dat' using 1:2 with points @PAPER
@KEYONLY
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot -1 notitle, keyentry with linespoints lt 1 title 'CachedAttention (KVLab)', \
     keyentry with linespoints lt 1 dt 2 title '... TTFT without queueing', keyentry with points @PAPER title "paper (ATC'24)"
unset multiplot

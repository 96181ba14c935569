# Session arrival rate (LLaMA-2-13B): hit rate (left) and mean TTFT (right, log scale) of
# CachedAttention (HBM + DRAM + SSD) and recomputation (RE). Diamonds: the paper's numbers at 0.5
# and 2.0 sessions/s.
#@needs ca-arrival
#@data hit.dat series ca-arrival --x workload.rate --y hit_rate --where cache.mode=hbm_dram_ssd --y-scale 100
#@data ttft.dat series ca-arrival --x workload.rate --y ttft_mean_s --series cache.mode --order hbm_dram_ssd,re --label-map 'hbm_dram_ssd=CachedAttention,re=RE'
#@data hit_paper.dat claims --ids abl.arrival.hit.0.5,abl.arrival.hit.2.0 --x 0.5,2.0 --scale 100
#@data ttft_paper.dat claims --ids abl.arrival.ttft.0.5,abl.arrival.ttft.2.0 --x 0.5,2.0

set xlabel 'arrival rate (sessions/s)'
set xrange [0.35:2.15]
set xtics 0.5,0.5,2.0
PL = 0.10; PR = 0.98; PB = 0.13; PT = 0.88; GX = 0.12
set multiplot
eval panel(0, 2, 0, 1)
set ylabel 'hit rate (%)'
set yrange [0:100]
plot D.'hit.dat' using 1:2 with linespoints lt 1, D.'hit_paper.dat' using 1:2 with points @PAPER
eval panel(1, 2, 0, 1)
set ylabel 'mean TTFT (s)'
set logscale y
set yrange [*:*]
set format y '10^{%T}'
plot for [i=0:*] D.'ttft.dat' index i using 1:2 with linespoints lt i+1, \
     D.'ttft_paper.dat' using 1:2 with points @PAPER
@KEYONLY
plot -1 notitle, keyentry with linespoints lt 1 title 'CachedAttention (KVLab)', \
     keyentry with linespoints lt 2 title 'recomputation, RE (KVLab)', keyentry with points @PAPER title "paper (ATC'24)"
unset multiplot

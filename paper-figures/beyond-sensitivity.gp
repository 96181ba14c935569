# Beyond the paper: the two quantities the paper leaves unstated that matter most in our model.
# CachedAttention's hit rate (left) and mean TTFT (right, log scale) against the mean think time
# between turns, one line per SSD read/write bandwidth (LLaMA-2-13B, the paper's setup otherwise);
# HBM + DRAM without SSD (independent of the SSD) and recomputation's TTFT for reference.
#@needs beyond-sensitivity
#@data hit.dat series beyond-sensitivity --x workload.think_mean_s --y hit_rate --where cache.mode=hbm_dram_ssd --series links.ssd_read_gbs --order 4,8,16 --label-map '4=SSD 4 / 3 GB/s,8=SSD 8 / 6 GB/s,16=SSD 16 / 12 GB/s' --y-scale 100
#@data ttft.dat series beyond-sensitivity --x workload.think_mean_s --y ttft_mean_s --where cache.mode=hbm_dram_ssd --series links.ssd_read_gbs --order 4,8,16
#@data hit_dram.dat series beyond-sensitivity --x workload.think_mean_s --y hit_rate --where cache.mode=hbm_dram --y-scale 100
#@data ttft_dram.dat series beyond-sensitivity --x workload.think_mean_s --y ttft_mean_s --where cache.mode=hbm_dram
#@data ttft_re.dat series beyond-sensitivity --x workload.think_mean_s --y ttft_mean_s --where cache.mode=re

set xlabel 'mean think time between turns (s)'
set logscale x
set xrange [3.5:430]
set xtics (5, 15, 60, 300)
PL = 0.10; PR = 0.98; PB = 0.13; PT = 0.86; GX = 0.12
set multiplot
eval panel(0, 2, 0, 1)
set ylabel 'CachedAttention hit rate (%)'
set yrange [0:100]
plot for [i=0:*] D.'hit.dat' index i using 1:2 with linespoints lt i+1, \
     D.'hit_dram.dat' using 1:2 with linespoints lt 7 dt 3
eval panel(1, 2, 0, 1)
set ylabel 'CachedAttention mean TTFT (s)'
set logscale y
set format y '10^{%T}'
set yrange [*:*]
plot for [i=0:*] D.'ttft.dat' index i using 1:2 with linespoints lt i+1, \
     D.'ttft_dram.dat' using 1:2 with linespoints lt 7 dt 3, \
     D.'ttft_re.dat' using 1:2 with lines @REF
@KEYONLY
set key maxrows 2
plot -1 notitle, keyentry with linespoints lt 1 title 'SSD 4/3 GB/s', \
     keyentry with linespoints lt 2 title 'SSD 8/6 GB/s', keyentry with linespoints lt 3 title 'SSD 16/12 GB/s', \
     keyentry with linespoints lt 7 dt 3 title 'HBM+DRAM (no SSD)', keyentry with lines @REF title 'RE (TTFT)'
unset multiplot

# Beyond the paper: what the paper leaves unstated and matters most in our model. Left:
# CachedAttention's hit rate (share of history tokens served from the cache) and HBM + DRAM's
# against the mean think time between turns, exponential (sigma 0) or log-normal with the
# calibrated sigma; right: CachedAttention's mean TTFT with an SSD array of 1 or 4 devices
# (4 / 3 GB/s each), recomputation's for reference (LLaMA-2-13B, base.ini otherwise).
#@needs beyond-sensitivity
#@data caption.gp caption experiments/cachedattention/base.ini beyond-sensitivity
#@data hit.dat series beyond-sensitivity --x workload.think_mean_s --y hist_hit_rate --where cache.mode=hbm_dram_ssd,links.ssd_devices=1 --series workload.think_sigma --order 0,0.925 --label-map '0=exponential,0.925=log-normal' --y-scale 100
#@data hit_dram.dat series beyond-sensitivity --x workload.think_mean_s --y hist_hit_rate --where cache.mode=hbm_dram,links.ssd_devices=1 --series workload.think_sigma --order 0,0.925 --y-scale 100
#@data ttft.dat series beyond-sensitivity --x workload.think_mean_s --y ttft_mean_s --where cache.mode=hbm_dram_ssd,workload.think_sigma=0.925 --series links.ssd_devices --order 1,4
#@data ttft_re.dat series beyond-sensitivity --x workload.think_mean_s --y ttft_mean_s --where cache.mode=re,workload.think_sigma=0.925,links.ssd_devices=1

load D.'caption.gp'
set xlabel 'mean think time between turns (s)'
set logscale x
set xrange [45:5500]
set xtics (60, 300, 1000, 2000, 4000)
PL = 0.10; PR = 0.98; PB = 0.18; PT = 0.84; GX = 0.12
set multiplot
eval panel(0, 2, 0, 1)
set ylabel 'hit rate (%)'
set yrange [0:100]
plot for [i=0:1] D.'hit.dat' index i using 1:2 with linespoints lt i+1, \
     for [i=0:1] D.'hit_dram.dat' index i using 1:2 with linespoints lt i+1 dt 3
eval panel(1, 2, 0, 1)
set ylabel 'mean TTFT (s)'
set logscale y
set format y '%g'
set yrange [*:*]
plot for [i=0:1] D.'ttft.dat' index i using 1:2 with linespoints lt i+3, \
     D.'ttft_re.dat' using 1:2 with lines @REF
@KEYONLY
set key maxrows 2
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot -1 notitle, keyentry with linespoints lt 1 title 'exponential think', \
     keyentry with linespoints lt 2 title 'log-normal think', keyentry with linespoints lt 1 dt 3 title 'HBM+DRAM (dotted)', \
     keyentry with linespoints lt 3 title 'TTFT, SSD 1 device', keyentry with linespoints lt 4 title 'TTFT, SSD 4 devices', \
     keyentry with lines @REF title 'RE (TTFT)'
unset multiplot

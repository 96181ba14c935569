# Beyond the paper: hit rate against SSD capacity for the OPT (Belady, future-knowledge) bound,
# scheduler-aware, LRU and FIFO eviction (LLaMA-65B on 4 GPUs, 2.5 MB of KV per token, 64 GB
# DRAM). OPT should bound the others from above.
#@needs beyond-opt
#@data hit.dat series beyond-opt --x cache.ssd_gib --y hit_rate --series cache.eviction --order opt,sa,lru,fifo --label-map 'opt=OPT (Belady),sa=scheduler-aware,lru=LRU,fifo=FIFO' --x-scale 0.0009765625 --y-scale 100

set xlabel 'SSD capacity (TB)'
set ylabel 'hit rate (%)'
set logscale x 2
set xrange [0.85:9.5]
set xtics (1, 2, 4, 8)
set yrange [0:100]
set key top left
plot D.'hit.dat' index 0 using 1:2 with linespoints lt 7 dt 2 title columnheader(1), \
     for [i=1:*] D.'hit.dat' index i using 1:2 with linespoints lt i title columnheader(1)

# Store capacity (LLaMA-2-13B, the paper's setup otherwise): hit rate against SSD capacity, one
# line per DRAM size. Capacities in binary units: 1 TB = 1024 GB = 1024 GiB of the config; the
# run's SSD is that scaled by the offered load (base.ini ssd_scale).
#@needs ca-capacity
#@data hit.dat series ca-capacity --x cache.ssd_gib --y hist_hit_rate --series cache.dram_gib --order 64,128,256 --label-map '64=DRAM 64 GB,128=DRAM 128 GB (paper),256=DRAM 256 GB' --x-scale 0.0009765625 --y-scale 100
#@data caption.gp caption experiments/cachedattention/base.ini ca-capacity
#@data paper.dat claims --ids ca.hit.llama-2-13b --x 10

set xlabel 'SSD capacity (TB)'
set ylabel 'hit rate (%)'
set xrange [0:11]
set xtics 0,1,11
set yrange [0:100]
set key bottom right
load D.'caption.gp'
set bmargin 5
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot for [i=0:*] D.'hit.dat' index i using 1:2 with linespoints lt i+1 title columnheader(1), \
     D.'paper.dat' using 1:($2*100) with points @PAPER title "paper (ATC'24): 128 GB, 10 TB"

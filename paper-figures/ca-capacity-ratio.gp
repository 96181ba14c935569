# Hit rate against the capacity ratio = total cache capacity / (distinct sessions per TTL x the
# largest session KV) (LLaMA-2-13B): (128 GiB DRAM + SSD) / 11,250 GiB at the paper's 1 session/s,
# as derived in experiments/cachedattention/capacity-ratio.ini (the run's store is that scaled by
# the offered load). Diamonds: the paper's two points.
#@needs ca-capacity-ratio
#@data caption.gp caption experiments/cachedattention/base.ini ca-capacity-ratio
#@data hit.dat series ca-capacity-ratio --x cache.ssd_gib --y hist_hit_rate --y-scale 100
#@data paper.dat claims --ids abl.ratio.0.1,abl.ratio.0.25 --x 0.1,0.25

DRAM_GIB = 128.0
DEMAND_GIB = 11250.0
set xlabel 'capacity ratio (cache capacity / demand)'
set ylabel 'hit rate (%)'
set xrange [0:1.05]
set xtics 0,0.1,1
set yrange [0:100]
set key bottom right
load D.'caption.gp'
set bmargin 5
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot D.'hit.dat' using (($1 + DRAM_GIB) / DEMAND_GIB):2 with linespoints lt 1 title 'KVLab', \
     D.'paper.dat' using 1:($2*100) with points @PAPER title "paper (ATC'24)"

# Fetching and eviction policies at 128 GB DRAM / 10 TB SSD (LLaMA-2-13B): hit rate, share of the
# hits served from DRAM, and GPU time relative to scheduler-aware, for scheduler-aware (look-ahead
# prefetch and eviction), LRU, FIFO and the OPT (Belady) bound. Diamonds: the paper's numbers.
#@needs ca-policies
#@data hit.dat series ca-policies --x cache.eviction --y hist_hit_rate --x-categorical --x-order sa,lru,fifo,opt
#@data dram.dat series ca-policies --x cache.eviction --y token_hit_rate_dram --y-over token_hit_rate --x-categorical --x-order sa,lru,fifo,opt
#@data gpu.dat series ca-policies --x cache.eviction --y gpu_busy_s --base-where cache.eviction=sa --base-global --op ratio --x-categorical --x-order sa,lru,fifo,opt
#@data caption.gp caption experiments/cachedattention/base.ini ca-policies
#@data hit_paper.dat claims --ids abl.policy.hit.sa,abl.policy.hit.lru,abl.policy.hit.fifo
#@data dram_paper.dat claims --ids abl.policy.dram.sa,abl.policy.dram.lru,abl.policy.dram.fifo
#@data gpu_paper.dat claims --ids abl.policy.gpu --x 1

set xtics ("sched.\naware" 0, "LRU" 1, "FIFO" 2, "OPT" 3) scale 0
set xrange [-0.6:3.6]
set grid noxtics
set boxwidth 0.65 absolute
PL = 0.10; PR = 0.99; PB = 0.16; PT = 0.88; GX = 0.09
set multiplot
eval panel(0, 3, 0, 1)
set ylabel 'hit rate (%)'
set yrange [0:100]
plot D.'hit.dat' using 1:($2*100) with boxes lc 1, D.'hit_paper.dat' using 1:($2*100) with points @PAPER
eval panel(1, 3, 0, 1)
set ylabel 'hit tokens served from DRAM (%)'
plot D.'dram.dat' using 1:($2*100) with boxes lc 1, D.'dram_paper.dat' using 1:($2*100) with points @PAPER
eval panel(2, 3, 0, 1)
set ylabel 'GPU time / scheduler-aware (×)'
set yrange [0:*]
plot D.'gpu.dat' using 1:2 with boxes lc 1, D.'gpu_paper.dat' using 1:2 with points @PAPER, \
     1 with lines @REF
@KEYONLY
plot -1 notitle, keyentry with boxes lc 1 title 'KVLab (LLaMA-2-13B, 128 GB DRAM, 10 TB SSD at 1 session/s)', \
     keyentry with points @PAPER title "paper (ATC'24; GPU time: LRU 'up to 2.7×')"
load D.'caption.gp'
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot -1 notitle
unset multiplot

# Layer-wise pre-loading (LLaMA-2-13B, 1K history + 100 new tokens, each behind a compute-only job): prefill latency
# against the read buffer (layers of KV loaded before the job starts), with recomputation (RE)
# and loading without pre-loading as references. Diamonds: the paper's reductions vs RE (-35%
# without a buffer, -61% with 15 layers) applied to KVLab's RE latency.
#@needs ca-preload
#@data preload.dat series ca-preload --x engine.read_buffer_layers --y prefill_latency_hist_mean_s --where cache.mode=hbm_dram_ssd,engine.preload=true --y-scale 1000
#@data nopre.dat series ca-preload --x engine.read_buffer_layers --y prefill_latency_hist_mean_s --where cache.mode=hbm_dram_ssd,engine.preload=false --y-scale 1000
#@data re.dat series ca-preload --x engine.read_buffer_layers --y prefill_latency_hist_mean_s --where cache.mode=re --y-scale 1000
#@data caption.gp caption experiments/cachedattention/base-micro.ini ca-preload --what 'per-job micro-benchmark, batch 1'
#@data paper.dat claims --ids abl.preload.nobuf,abl.preload.buf15 --x 0,15

stats D.'re.dat' using 2 nooutput
RE = STATS_mean
stats D.'nopre.dat' using 2 nooutput
NOPRE = STATS_mean
load D.'caption.gp'
set bmargin 5
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
set xlabel 'read buffer (layers)'
set ylabel 'prefill latency (ms)'
set xrange [-0.5:15.5]
set xtics 0,1,15
set yrange [0:RE*1.2]
set key at graph 0.99, graph 0.74 right top
plot RE with lines @REF title 'recomputation (RE)', \
     NOPRE with lines dt 3 lw 2 lc 2 title 'KV loaded, no pre-loading', \
     D.'preload.dat' using 1:2 with linespoints lt 1 title 'layer-wise pre-loading (KVLab)', \
     D.'paper.dat' using 1:(RE*(1-$2)) with points @PAPER title "paper (ATC'24), as reduction vs our RE"

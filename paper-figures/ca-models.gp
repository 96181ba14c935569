# CachedAttention vs recomputation (RE) for the four models (the paper's main comparison). Each
# panel sets KVLab's value (solid bar) beside the paper's (light bar, its number printed above),
# so that absolute values are compared, not only their ratio: hit rate (share of history tokens
# served from the cache), TTFT reduction, prefill-throughput ratio and cost reduction; the last
# panel gives KVLab's absolute mean TTFTs (log scale) with and without queueing, for which the
# paper gives no absolute numbers. No axis is clipped: ranges grow to hold every bar. A run that
# is not stationary would show no TTFT: its claim reads "non-stationary" in REPRODUCTION.md.
#@needs ca-models
#@data caption.gp caption experiments/cachedattention/base.ini ca-models
#@data hit.dat series ca-models --x sim.model --y hist_hit_rate --where cache.mode=hbm_dram_ssd --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data ttft.dat series ca-models --x sim.model --y ttft_mean_s --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op reduction --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data prefill.dat series ca-models --x sim.model --y prefill_throughput_tok_s --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op ratio --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data cost.dat series ca-models --x sim.model --y cost_total_usd --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op reduction --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data abs.dat series ca-models --x sim.model --y ttft_mean_s --series cache.mode --order hbm_dram_ssd,re --label-map 'hbm_dram_ssd=CachedAttention,re=RE' --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data absnq.dat series ca-models --x sim.model --y ttft_noqueue_mean_s --series cache.mode --order hbm_dram_ssd,re --label-map 'hbm_dram_ssd=CachedAttention,re=RE' --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data hit_paper.dat claims --ids ca.hit.llama-2-13b,ca.hit.llama-65b,ca.hit.llama-2-70b,ca.hit.falcon-40b
#@data ttft_paper.dat claims --ids ca.ttft.llama-2-13b,ca.ttft.llama-65b,ca.ttft.llama-2-70b,ca.ttft.falcon-40b
#@data prefill_paper.dat claims --ids ca.prefill.llama-2-13b,ca.prefill.llama-65b,ca.prefill.llama-2-70b,ca.prefill.falcon-40b
#@data cost_paper.dat claims --ids ca.cost.llama-2-13b,ca.cost.llama-65b,ca.cost.llama-2-70b,ca.cost.falcon-40b

load D.'caption.gp'
set terminal push
if (fmt eq 'svg') { set terminal svg size 1000,620 dynamic enhanced font 'DejaVu Sans,13' background rgb 'white' } \
else { set terminal pngcairo size 1000,620 enhanced font 'DejaVu Sans,11' background rgb 'white' }
if (exists("out")) set output out
set xtics ("13B" 0, "65B" 1, "70B" 2, "Falcon-40B" 3) scale 0
set xrange [-0.6:3.6]
set grid noxtics
W = 0.36
OURS = "with boxes lc 1"
PAPERBAR = "with boxes fs solid 0.35 border rgb '#333333' lc rgb '#888888'"
LAB = "with labels font ',8' offset 0,0.6"
PL = 0.07; PR = 0.99; PB = 0.12; PT = 0.90; GX = 0.07; GY = 0.13
set multiplot
eval panel(0, 3, 0, 2)
set ylabel 'hit rate (%)'
set yrange [0:110]
plot D.'hit.dat' using ($1-W/2):($2*100):(W) @OURS, D.'hit_paper.dat' using ($1+W/2):($2*100):(W) @PAPERBAR, \
     D.'hit.dat' using ($1-W/2):($2*100):(sprintf('%.0f', $2*100)) @LAB, \
     D.'hit_paper.dat' using ($1+W/2):($2*100):(sprintf('%.0f', $2*100)) @LAB
eval panel(1, 3, 0, 2)
set ylabel 'TTFT reduction vs RE (%)'
set yrange [*<0:110]
plot D.'ttft.dat' using ($1-W/2):($2*100):(W) @OURS, D.'ttft_paper.dat' using ($1+W/2):($2*100):(W) @PAPERBAR, \
     D.'ttft.dat' using ($1-W/2):($2*100):(sprintf('%.0f', $2*100)) @LAB, \
     D.'ttft_paper.dat' using ($1+W/2):($2*100):(sprintf('%.0f', $2*100)) @LAB, 0 with lines lc rgb '#333333' lw 1
eval panel(2, 3, 0, 2)
set ylabel 'prefill throughput vs RE (×)'
set yrange [0:*]
plot D.'prefill.dat' using ($1-W/2):2:(W) @OURS, D.'prefill_paper.dat' using ($1+W/2):2:(W) @PAPERBAR, \
     D.'prefill.dat' using ($1-W/2):2:(sprintf('%.1f', $2)) @LAB, \
     D.'prefill_paper.dat' using ($1+W/2):2:(sprintf('%.1f', $2)) @LAB, 1 with lines @REF
eval panel(0, 3, 1, 2)
set ylabel 'cost reduction vs RE (%)'
set yrange [*<0:110]
plot D.'cost.dat' using ($1-W/2):($2*100):(W) @OURS, D.'cost_paper.dat' using ($1+W/2):($2*100):(W) @PAPERBAR, \
     D.'cost.dat' using ($1-W/2):($2*100):(sprintf('%.0f', $2*100)) @LAB, \
     D.'cost_paper.dat' using ($1+W/2):($2*100):(sprintf('%.0f', $2*100)) @LAB, 0 with lines lc rgb '#333333' lw 1
set lmargin at screen px0(1, 3)
set rmargin at screen PR
set ylabel 'mean TTFT (s), KVLab'
set logscale y
set yrange [*:*]
set format y '%g'
set key top left font ',9' samplen 1
plot D.'abs.dat' index 0 using ($1-0.3):2:(0.2) with boxes lc 1 title 'CachedAttention', \
     D.'absnq.dat' index 0 using ($1-0.1):2:(0.2) with boxes lc 1 fs pattern 4 title '… without queueing', \
     D.'abs.dat' index 1 using ($1+0.1):2:(0.2) with boxes lc 2 title 'RE', \
     D.'absnq.dat' index 1 using ($1+0.3):2:(0.2) with boxes lc 2 fs pattern 4 title '… without queueing'
unset logscale y
unset key
@KEYONLY
set label 99 CAPTION at screen 0.5,0.025 center font ',9' tc rgb '#333333'
plot -1 notitle, keyentry with boxes lc 1 title 'KVLab: HBM+DRAM+SSD vs RE', keyentry @PAPERBAR title "paper (ATC'24)"
unset multiplot

# Sensitivity to our assumptions (experiments/cachedattention/sensitivity.ini and
# sensitivity-output.ini): LLaMA-2-13B's hit rate, TTFT reduction, prefill-throughput ratio and
# cost reduction vs RE when one assumption of base.ini changes at a time (the last three bars:
# answers half, twice (base) and four times as long as prompts). The paper's numbers as dashed
# lines.
#@needs ca-sensitivity ca-sensitivity-output
#@data caption.gp caption experiments/cachedattention/base.ini ca-sensitivity
#@data hit.dat series ca-sensitivity --x case --y hist_hit_rate --where cache.mode=hbm_dram_ssd --x-categorical --x-order base,lookahead-queue,prefill-first,staging-4g,staging-64g,save-chunk-256,ssd-no-sharing,decode-first-token --y-scale 100
#@data hit_out.dat series ca-sensitivity-output --x case --y hist_hit_rate --where cache.mode=hbm_dram_ssd --x-categorical --x-order output-ratio-0.5,output-ratio-2,output-ratio-4 --y-scale 100
#@data ttft.dat series ca-sensitivity --x case --y ttft_mean_s --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op reduction --x-categorical --x-order base,lookahead-queue,prefill-first,staging-4g,staging-64g,save-chunk-256,ssd-no-sharing,decode-first-token
#@data ttft_out.dat series ca-sensitivity-output --x case --y ttft_mean_s --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op reduction --x-categorical --x-order output-ratio-0.5,output-ratio-2,output-ratio-4
#@data prefill.dat series ca-sensitivity --x case --y prefill_throughput_tok_s --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op ratio --x-categorical --x-order base,lookahead-queue,prefill-first,staging-4g,staging-64g,save-chunk-256,ssd-no-sharing,decode-first-token
#@data prefill_out.dat series ca-sensitivity-output --x case --y prefill_throughput_tok_s --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op ratio --x-categorical --x-order output-ratio-0.5,output-ratio-2,output-ratio-4
#@data cost.dat series ca-sensitivity --x case --y cost_total_usd --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op reduction --x-categorical --x-order base,lookahead-queue,prefill-first,staging-4g,staging-64g,save-chunk-256,ssd-no-sharing,decode-first-token
#@data cost_out.dat series ca-sensitivity-output --x case --y cost_total_usd --where cache.mode=hbm_dram_ssd --base-where cache.mode=re --op reduction --x-categorical --x-order output-ratio-0.5,output-ratio-2,output-ratio-4

load D.'caption.gp'
set terminal push
if (fmt eq 'svg') { set terminal svg size 1000,640 dynamic enhanced font 'DejaVu Sans,13' background rgb 'white' } \
else { set terminal pngcairo size 1000,640 enhanced font 'DejaVu Sans,11' background rgb 'white' }
if (exists("out")) set output out
set xrange [-0.6:10.6]
set grid noxtics
set boxwidth 0.7 absolute
set xtics rotate by 35 right font ',9' scale 0
LAB = "with labels font ',8' offset 0,0.6"
PL = 0.08; PR = 0.99; PB = 0.20; PT = 0.95; GX = 0.08; GY = 0.30
set multiplot
eval panel(0, 2, 0, 2)
set ylabel 'hit rate (%)'
set yrange [0:110]
set format x ''
plot D.'hit.dat' using 1:2 with boxes lc 1, '' using 1:2:(sprintf('%.0f', $2)) @LAB, \
     D.'hit_out.dat' using ($1+8):2 with boxes lc 2, '' using ($1+8):2:(sprintf('%.0f', $2)) @LAB, 86 with lines @REF
eval panel(1, 2, 0, 2)
set ylabel 'TTFT reduction vs RE (%)'
set yrange [*<0:110]
plot D.'ttft.dat' using 1:($2*100) with boxes lc 1, '' using 1:($2*100):(sprintf('%.0f', $2*100)) @LAB, \
     D.'ttft_out.dat' using ($1+8):($2*100) with boxes lc 2, '' using ($1+8):($2*100):(sprintf('%.0f', $2*100)) @LAB, 85 with lines @REF, 0 with lines lc rgb '#333333' lw 1
set format x '%g'
eval panel(0, 2, 1, 2)
set ylabel 'prefill throughput vs RE (×)'
set yrange [0:*]
plot D.'prefill.dat' using 1:2:xtic(6) with boxes lc 1, '' using 1:2:(sprintf('%.1f', $2)) @LAB, \
     D.'prefill_out.dat' using ($1+8):2:xtic(6) with boxes lc 2, '' using ($1+8):2:(sprintf('%.1f', $2)) @LAB, 6.8 with lines @REF
eval panel(1, 2, 1, 2)
set ylabel 'cost reduction vs RE (%)'
set yrange [*<0:110]
plot D.'cost.dat' using 1:($2*100):xtic(6) with boxes lc 1, '' using 1:($2*100):(sprintf('%.0f', $2*100)) @LAB, \
     D.'cost_out.dat' using ($1+8):($2*100):xtic(6) with boxes lc 2, '' using ($1+8):($2*100):(sprintf('%.0f', $2*100)) @LAB, 70 with lines @REF, 0 with lines lc rgb '#333333' lw 1
@KEYONLY
set label 99 CAPTION." | paper's 13B numbers dashed" at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot -1 notitle
unset multiplot

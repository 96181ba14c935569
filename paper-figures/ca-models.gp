# CachedAttention vs recomputation (RE) for the four models (the paper's main comparison):
# hit rate, TTFT reduction, prefill throughput ratio and cost reduction. Bars: KVLab (HBM + DRAM +
# SSD, scheduler-aware, against RE on the same workload); diamonds: the paper's numbers. The paper-bound SSD (4 GB/s) only; the 16 GB/s rows are in REPRODUCTION.md.
#@needs ca-models
#@data hit.dat series ca-models --x sim.model --y hit_rate --where links.ssd_read_gbs=4,cache.mode=hbm_dram_ssd --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data ttft.dat series ca-models --x sim.model --y ttft_mean_s --where links.ssd_read_gbs=4,cache.mode=hbm_dram_ssd --base-where links.ssd_read_gbs=4,cache.mode=re --op reduction --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data prefill.dat series ca-models --x sim.model --y prefill_throughput_tok_s --where links.ssd_read_gbs=4,cache.mode=hbm_dram_ssd --base-where links.ssd_read_gbs=4,cache.mode=re --op ratio --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data cost.dat series ca-models --x sim.model --y cost_total_usd --where links.ssd_read_gbs=4,cache.mode=hbm_dram_ssd --base-where links.ssd_read_gbs=4,cache.mode=re --op reduction --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data hit_paper.dat claims --ids ca.hit.llama-2-13b,ca.hit.llama-65b,ca.hit.llama-2-70b,ca.hit.falcon-40b
#@data ttft_paper.dat claims --ids ca.ttft.llama-2-13b,ca.ttft.llama-65b,ca.ttft.llama-2-70b,ca.ttft.falcon-40b
#@data prefill_paper.dat claims --ids ca.prefill.llama-2-13b,ca.prefill.llama-65b,ca.prefill.llama-2-70b,ca.prefill.falcon-40b
#@data cost_paper.dat claims --ids ca.cost.llama-2-13b,ca.cost.llama-65b,ca.cost.llama-2-70b,ca.cost.falcon-40b

set xtics ("LLaMA-2\n13B" 0, "LLaMA\n65B" 1, "LLaMA-2\n70B" 2, "Falcon\n40B" 3) scale 0
set xrange [-0.6:3.6]
set boxwidth 0.6 absolute
set grid noxtics
# bars below the y range are drawn down to it and labelled with their value
lo = -100
clip(y) = y < lo ? lo : y
cliplab(y) = y < lo ? sprintf("%.0f%%", y) : ""

set multiplot
eval panel(0, 2, 0, 2)
set ylabel 'hit rate (%)'
set yrange [0:100]
plot D.'hit.dat' using 1:($2*100) with boxes lc 1, \
     D.'hit_paper.dat' using 1:($2*100) with points @PAPER
eval panel(1, 2, 0, 2)
set ylabel 'TTFT reduction vs RE (%)'
set yrange [lo:100]
set ytics 50
plot D.'ttft.dat' using 1:(clip($2*100)) with boxes lc 1, \
     '' using 1:(lo/2):(cliplab($2*100)) with labels rotate by 90 font ',9' tc rgb 'white', \
     D.'ttft_paper.dat' using 1:($2*100) with points @PAPER, 0 with lines lc rgb '#333333' lw 1
eval panel(0, 2, 1, 2)
set ylabel 'prefill throughput vs RE (×)'
set yrange [0:*]
set ytics autofreq
set label 1 'RE' at 3.55,1 right offset 0,0.6 font ',9' tc rgb '#555555'
plot D.'prefill.dat' using 1:2 with boxes lc 1, \
     D.'prefill_paper.dat' using 1:2 with points @PAPER, 1 with lines @REF
unset label 1
eval panel(1, 2, 1, 2)
set ylabel 'cost reduction vs RE (%)'
set yrange [lo:100]
set ytics 50
plot D.'cost.dat' using 1:(clip($2*100)) with boxes lc 1, \
     '' using 1:(lo/2):(cliplab($2*100)) with labels rotate by 90 font ',9' tc rgb 'white', \
     D.'cost_paper.dat' using 1:($2*100) with points @PAPER, 0 with lines lc rgb '#333333' lw 1
@KEYONLY
plot -1 notitle, keyentry with boxes lc 1 title 'KVLab: HBM+DRAM+SSD vs RE', keyentry with points @PAPER title 'paper (ATC''24)'
unset multiplot

# Storage media (the paper's ablation): hit rate (share of history tokens served from the cache)
# per model with an HBM-only cache (10 GB), HBM + DRAM, and HBM + DRAM + SSD (CachedAttention).
# Bars: KVLab; diamonds: the paper's numbers.
#@needs ca-models
#@data hit.dat series ca-models --x sim.model --y hist_hit_rate --series cache.mode --order hbm,hbm_dram,hbm_dram_ssd --label-map 'hbm=HBM only (10 GB),hbm_dram=HBM + DRAM,hbm_dram_ssd=HBM + DRAM + SSD (CachedAttention)' --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b
#@data caption.gp caption experiments/cachedattention/base.ini ca-models
#@data paper0.dat claims --ids media.hbm.llama-2-13b,media.hbm.llama-65b,media.hbm.llama-2-70b,media.hbm.falcon-40b
#@data paper1.dat claims --ids media.hbm_dram.llama-2-13b,media.hbm_dram.llama-65b,media.hbm_dram.llama-2-70b,media.hbm_dram.falcon-40b
#@data paper2.dat claims --ids ca.hit.llama-2-13b,ca.hit.llama-65b,ca.hit.llama-2-70b,ca.hit.falcon-40b

set xtics ("LLaMA-2-13B" 0, "LLaMA-65B" 1, "LLaMA-2-70B" 2, "Falcon-40B" 3) scale 0
set xrange [-0.6:3.6]
set grid noxtics
set ylabel 'hit rate (%)'
set yrange [0:105]
set ytics 0,20,100
set key at screen 0.5,0.995 center top horizontal maxrows 1 width 1
set tmargin 3.2
W = 0.8
load D.'caption.gp'
set bmargin 4
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot for [i=0:2] D.'hit.dat' index i using ($1 + bar_off(i, 3, W)):($2*100):(W/3) with boxes lc i+1 title columnheader(1), \
     for [i=0:2] D.'paper'.i.'.dat' using ($1 + bar_off(i, 3, W)):($2*100) with points @PAPER title (i == 0 ? "paper (ATC'24)" : '')

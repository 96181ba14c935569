# Per-layer and per-head KV budgets on the recorded Q/K/V sample (CPU reference): tokens needed
# to cover 95% of the softmax mass in each layer — the mean over queries and heads per kind of
# text (bars, named by the recording's text_kind; "synthetic" is psa-compare's synthetic file),
# the 10th - 90th percentile over queries (error bars), each head's mean (grey dots) — with the
# 90% and 99% means and the mean context length for reference.
#@needs psa-budgets
#@data all95.dat series psa-budgets --x layer --y mean_tokens_95 --where head=all --series text_kind --band p10_tokens_95,p90_tokens_95
#@data all90.dat series psa-budgets --x layer --y mean_tokens_90 --where head=all
#@data all99.dat series psa-budgets --x layer --y mean_tokens_99 --where head=all
#@data context.dat series psa-budgets --x layer --y mean_context --where head=all
#@data heads.dat series psa-budgets --x layer --y mean_tokens_95 --match 'head=^[0-9]+$' --series head

stats D.'all95.dat' using 1 nooutput
NL = STATS_max + 1
NK = STATS_blocks
stats D.'heads.dat' using 1 nooutput
NH = STATS_blocks
W = 0.7
set xlabel 'layer'
set ylabel 'tokens'
set logscale y
set format y '10^{%T}'
set xrange [-0.6:NL-0.4]
set xtics 0,1
set grid noxtics
set tmargin at screen 0.84
set bmargin at screen 0.12
set key at screen 0.5,0.995 center top horizontal maxrows 3
plot for [i=0:NK-1] D.'all95.dat' index i using ($1 + bar_off(i, NK, W)):2:(W/NK) with boxes lc i+1 fs solid 0.55 title '95% of the mass: '.columnheader(1), \
     for [i=0:NK-1] D.'all95.dat' index i using ($1 + bar_off(i, NK, W)):2:3:4 with yerrorbars lt 7 lw 1.5 pt 0 title (i == 0 ? 'p10 - p90 over queries' : ''), \
     for [i=0:NH-1] D.'heads.dat' index i using ($1 - W/2 + W * (i + 0.5) / NH):2 with points pt 7 ps 0.5*PSF lc rgb '#777777' title (i == 0 ? 'per head (mean)' : ''), \
     D.'all90.dat' using 1:2 with points pt 10 ps 1.6*PSF lw 2 lc rgb '#009E73' title '90%: mean', \
     D.'all99.dat' using 1:2 with points pt 8 ps 1.6*PSF lw 2 lc rgb '#D55E00' title '99%: mean', \
     D.'context.dat' using 1:2 with linespoints @REF pt 0 title 'context (tokens)'

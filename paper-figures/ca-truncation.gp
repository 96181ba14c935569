# Context-window overflow (the paper's truncation ablation): hit rate per model with
# position-decoupled truncation (CachedAttention), token truncation with recomputation (TT) and
# truncation of position-embedded KV (NKVT); right: the hit rate each baseline loses, against the
# paper's range (17.6 - 41.5 points lower, grey band); the labels give each model's share of turns
# that overflow its context window (the workload's overflow rate).
#@needs ca-truncation
#@data hit.dat series ca-truncation --x sim.model --y hist_hit_rate --series engine.truncation --order decoupled,tt,nkvt --label-map 'decoupled=decoupled (CachedAttention),tt=TT,nkvt=NKVT' --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b --y-scale 100
#@data loss_tt.dat series ca-truncation --x sim.model --y hist_hit_rate --where engine.truncation=tt --base-where engine.truncation=decoupled --op difference --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b --y-scale -100
#@data loss_nkvt.dat series ca-truncation --x sim.model --y hist_hit_rate --where engine.truncation=nkvt --base-where engine.truncation=decoupled --op difference --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b --y-scale -100
#@data caption.gp caption experiments/cachedattention/base.ini ca-truncation
#@data overflow.dat series ca-truncation --x sim.model --y truncated_frac --where engine.truncation=decoupled --x-categorical --x-order llama-2-13b,llama-65b,llama-2-70b,falcon-40b --y-scale 100
#@data paper.dat claims --ids abl.trunc.tt.llama-2-13b --scale 100

stats D.'paper.dat' using 3 nooutput
PLO = STATS_min
stats D.'paper.dat' using 4 nooutput
PHI = STATS_max
set xtics ("LLaMA-2\n13B" 0, "LLaMA\n65B" 1, "LLaMA-2\n70B" 2, "Falcon\n40B" 3) scale 0
set xrange [-0.6:3.6]
set grid noxtics
W = 0.8
PL = 0.10; PR = 0.99; PB = 0.17; PT = 0.86; GX = 0.10
load D.'caption.gp'
set multiplot
eval panel(0, 2, 0, 1)
set ylabel 'hit rate (%)'
set yrange [0:100]
plot for [i=0:2] D.'hit.dat' index i using ($1 + bar_off(i, 3, W)):2:(W/3) with boxes lc i+1, \
     D.'overflow.dat' using 1:(5):(sprintf('%.0f%% overflow', $2)) with labels font ',8' tc rgb 'white'
eval panel(1, 2, 0, 1)
set ylabel 'hit rate lost vs decoupled (points)'
set yrange [0:50<*]
set object 1 rect from graph 0, first PLO to graph 1, first PHI fc rgb '#d9d9d9' fs solid 0.6 noborder behind
plot D.'loss_tt.dat' using ($1 + bar_off(0, 2, 0.6)):2:(0.3) with boxes lc 2, \
     D.'loss_nkvt.dat' using ($1 + bar_off(1, 2, 0.6)):2:(0.3) with boxes lc 3
unset object 1
@KEYONLY
set label 99 CAPTION at screen 0.5,0.02 center font ',9' tc rgb '#333333'
plot -1 notitle, keyentry with boxes lc 1 title 'decoupled (CachedAttention)', keyentry with boxes lc 2 title 'TT', \
     keyentry with boxes lc 3 title 'NKVT', keyentry with boxes fc rgb '#d9d9d9' fs solid 0.6 noborder title "paper (ATC'24): 17.6-41.5 points lost"
unset multiplot

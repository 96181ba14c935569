# PSA in the serving simulator (issue 8; experiments/psa-serving/methods.ini): end-to-end
# throughput (generated tokens / served time) against the mean relative L2 output error each
# method had on the recorded Q/K/V (log), for fixed top-k budgets (grown with the context like
# PSA's tokens: topk_extension = fit, the equal-accuracy comparison) and PSA epsilons; KV in HBM (left) and KV
# offloaded to host DRAM with a GPU block cache (right). Long-context document QA, 4K-token
# answers. Dense attention (KV in HBM) is the dashed line; methods with zero error (a top-k
# budget as large as the recorded context) cannot sit on the log axis and are left out.
#@needs psa-serving-methods
#@data topk_hbm.dat series psa-serving-methods --x attn_mean_err --y throughput_tok_s --where attention.topk_extension=fit,attention.offload=false,workload.out_median=4096 --match 'attention.method=^topk-'
#@data psa_hbm.dat series psa-serving-methods --x attn_mean_err --y throughput_tok_s --where attention.topk_extension=fit,attention.offload=false,workload.out_median=4096 --match 'attention.method=^psa-'
#@data dense_hbm.dat series psa-serving-methods --x attn_mean_err --y throughput_tok_s --where attention.topk_extension=fit,attention.offload=false,workload.out_median=4096,attention.method=dense
#@data topk_off.dat series psa-serving-methods --x attn_mean_err --y throughput_tok_s --where attention.topk_extension=fit,attention.offload=true,workload.out_median=4096 --match 'attention.method=^topk-'
#@data psa_off.dat series psa-serving-methods --x attn_mean_err --y throughput_tok_s --where attention.topk_extension=fit,attention.offload=true,workload.out_median=4096 --match 'attention.method=^psa-'

stats D.'dense_hbm.dat' using 2 nooutput
DENSE = STATS_mean
set xlabel 'mean relative L2 output error (recorded Q/K/V)'
set logscale x
set format x '10^{%T}'
set ylabel 'throughput (generated tokens/s)'
set yrange [0:*]
PL = 0.10; PR = 0.98; PB = 0.13; PT = 0.84; GX = 0.10
set multiplot
eval panel(0, 2, 0, 1)
set label 1 'KV in HBM' at graph 0.97, graph 0.05 right font ',11'
plot D.'topk_hbm.dat' using 1:2 with linespoints lt 1, D.'psa_hbm.dat' using 1:2 with linespoints lt 2, \
     DENSE with lines @REF
eval panel(1, 2, 0, 1)
set label 1 'KV in host DRAM, GPU block cache' at graph 0.97, graph 0.05 right font ',11'
set ylabel ''
plot D.'topk_off.dat' using 1:2 with linespoints lt 1, D.'psa_off.dat' using 1:2 with linespoints lt 2, \
     DENSE with lines @REF
@KEYONLY
plot -1 notitle, keyentry with linespoints lt 1 title 'fixed top-k (budget grown with context)', \
     keyentry with linespoints lt 2 title 'PSA (ε 0.8 - 0.99)', keyentry with lines @REF title 'dense (KV in HBM)'
unset multiplot

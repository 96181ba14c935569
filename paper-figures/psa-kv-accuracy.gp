# PSA vs fixed top-k on the recorded Q/K/V sample (CPU reference, all layers): KV bytes read per
# decode query (metadata included, as a fraction of dense attention's) against the mean relative
# L2 error of the attention output vs dense (left) and the softmax mass covered (right). One line
# per family: fixed top-k budgets 64 - 2048 tokens, PSA with the mean and the log-normal estimates
# of the unvisited mass (epsilon 0.8 - 0.99), PSA with the upper bound (epsilon 0.95), and the
# oracle (true block masses).
#@needs psa-kv-accuracy
#@data dense.dat series psa-kv-accuracy --x mean_bytes_read --y mean_rel_l2_err --where method=dense,layer=all
#@data err_topk.dat series psa-kv-accuracy --x mean_bytes_read --y mean_rel_l2_err --where layer=all --match 'method=^topk-'
#@data err_psa_mean.dat series psa-kv-accuracy --x mean_bytes_read --y mean_rel_l2_err --where layer=all --match 'method=^psa-.*-mean$'
#@data err_psa_ln.dat series psa-kv-accuracy --x mean_bytes_read --y mean_rel_l2_err --where layer=all --match 'method=^psa-.*-lognormal$'
#@data err_psa_bound.dat series psa-kv-accuracy --x mean_bytes_read --y mean_rel_l2_err --where layer=all --match 'method=^psa-.*-bound$'
#@data err_oracle.dat series psa-kv-accuracy --x mean_bytes_read --y mean_rel_l2_err --where layer=all --match 'method=^oracle-'
#@data mass_topk.dat series psa-kv-accuracy --x mean_bytes_read --y mean_mass_covered --where layer=all --match 'method=^topk-' --y-scale 100
#@data mass_psa_mean.dat series psa-kv-accuracy --x mean_bytes_read --y mean_mass_covered --where layer=all --match 'method=^psa-.*-mean$' --y-scale 100
#@data mass_psa_ln.dat series psa-kv-accuracy --x mean_bytes_read --y mean_mass_covered --where layer=all --match 'method=^psa-.*-lognormal$' --y-scale 100
#@data mass_psa_bound.dat series psa-kv-accuracy --x mean_bytes_read --y mean_mass_covered --where layer=all --match 'method=^psa-.*-bound$' --y-scale 100
#@data mass_oracle.dat series psa-kv-accuracy --x mean_bytes_read --y mean_mass_covered --where layer=all --match 'method=^oracle-' --y-scale 100

stats D.'dense.dat' using 1 nooutput
DENSE = STATS_max
fam = "topk psa_mean psa_ln psa_bound oracle"
set xlabel 'KV bytes read (fraction of dense)'
set logscale x
set xrange [*:1.3]
set grid xtics ytics
PL = 0.10; PR = 0.98; PB = 0.13; PT = 0.86; GX = 0.11
set multiplot
eval panel(0, 2, 0, 1)
set ylabel 'mean relative L2 output error'
set logscale y
set format y '10^{%T}'
plot for [i=1:4] D.'err_'.word(fam, i).'.dat' using ($1/DENSE):2 with linespoints lt i, \
     D.'err_oracle.dat' using ($1/DENSE):2 with linespoints lt 7 dt 2
eval panel(1, 2, 0, 1)
set ylabel 'attention mass covered (%)'
unset logscale y
set format y '%g'
set yrange [*:100]
plot for [i=1:4] D.'mass_'.word(fam, i).'.dat' using ($1/DENSE):2 with linespoints lt i, \
     D.'mass_oracle.dat' using ($1/DENSE):2 with linespoints lt 7 dt 2
@KEYONLY
set key maxrows 2
plot -1 notitle, keyentry with linespoints lt 1 title 'top-k (64-2048 tokens)', \
     keyentry with linespoints lt 2 title 'PSA, mean estimate', keyentry with linespoints lt 3 title 'PSA, log-normal estimate', \
     keyentry with linespoints lt 4 title 'PSA, upper bound (ε 0.95)', keyentry with linespoints lt 7 dt 2 title 'oracle'
unset multiplot

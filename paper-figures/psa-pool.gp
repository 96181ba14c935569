# Unified cross-layer KV block pool vs per-layer partitions (PSA's per-layer budgets measured with
# the CPU reference on the recorded sample): blocks needed to serve every decode step without
# overflow, for a unified pool, equal per-layer partitions and partitions sized per layer, per
# epsilon (bars) and batch size (panels); the number above each group is equal / unified.
#@needs psa-pool
#@data unified1.dat series psa-pool --x epsilon --y unified_blocks --where batch=1 --x-categorical --x-order 0.9,0.95,0.99
#@data equal1.dat series psa-pool --x epsilon --y equal_blocks --where batch=1 --x-categorical --x-order 0.9,0.95,0.99
#@data sized1.dat series psa-pool --x epsilon --y sized_blocks --where batch=1 --x-categorical --x-order 0.9,0.95,0.99
#@data ratio1.dat series psa-pool --x epsilon --y equal_blocks --y-over unified_blocks --where batch=1 --x-categorical --x-order 0.9,0.95,0.99
#@data unified4.dat series psa-pool --x epsilon --y unified_blocks --where batch=4 --x-categorical --x-order 0.9,0.95,0.99
#@data equal4.dat series psa-pool --x epsilon --y equal_blocks --where batch=4 --x-categorical --x-order 0.9,0.95,0.99
#@data sized4.dat series psa-pool --x epsilon --y sized_blocks --where batch=4 --x-categorical --x-order 0.9,0.95,0.99
#@data ratio4.dat series psa-pool --x epsilon --y equal_blocks --y-over unified_blocks --where batch=4 --x-categorical --x-order 0.9,0.95,0.99
#@data unified16.dat series psa-pool --x epsilon --y unified_blocks --where batch=16 --x-categorical --x-order 0.9,0.95,0.99
#@data equal16.dat series psa-pool --x epsilon --y equal_blocks --where batch=16 --x-categorical --x-order 0.9,0.95,0.99
#@data sized16.dat series psa-pool --x epsilon --y sized_blocks --where batch=16 --x-categorical --x-order 0.9,0.95,0.99
#@data ratio16.dat series psa-pool --x epsilon --y equal_blocks --y-over unified_blocks --where batch=16 --x-categorical --x-order 0.9,0.95,0.99

batches = "1 4 16"
kinds = "unified equal sized"
array YM[3]
do for [b=1:3] {
  stats D.'equal'.word(batches, b).'.dat' using 2 nooutput
  YM[b] = STATS_max / 1000 * 1.18
}
W = 0.8
set xtics ("ε 0.90" 0, "ε 0.95" 1, "ε 0.99" 2) scale 0
set xrange [-0.6:2.6]
set grid noxtics
PL = 0.10; PR = 0.99; PB = 0.12; PT = 0.86; GX = 0.08
set multiplot
do for [b=1:3] {
  eval panel(b - 1, 3, 0, 1)
  set ylabel (b == 1 ? 'KV blocks needed (thousands)' : '')
  set title sprintf('batch %s', word(batches, b)) font ',11' offset 0,-0.5
  YMAX = YM[b]
  set yrange [0:YMAX]
  plot for [k=1:3] D.word(kinds, k).word(batches, b).'.dat' using ($1 + bar_off(k - 1, 3, W)):($2/1000):(W/3) with boxes lc k, \
       D.'ratio'.word(batches, b).'.dat' using 1:(YMAX*0.95):(sprintf('%.2f×', $2)) with labels font ',10'
}
unset title
@KEYONLY
set label 1 'n.nn× above a group: equal partitions / unified pool' at screen 0.99, 0.025 right font ',9' tc rgb '#555555'
plot -1 notitle, keyentry with boxes lc 1 title 'unified pool', keyentry with boxes lc 2 title 'equal per-layer partitions', \
     keyentry with boxes lc 3 title 'partitions sized per layer'
unset multiplot

# Beyond the papers: the public Mooncake conversation trace (FAST'25) replayed in request order
# through a block cache keyed by its 512-token prefix hashes: token hit ratio against cache
# capacity for LRU, FIFO and OPT (Mooncake's Figure 9 style); the dotted line is the hit ratio
# with unlimited capacity, the diamond the trace's reuse as the Mooncake paper states it.
#@needs beyond-mooncake
#@data hit.dat series beyond-mooncake --x capacity_tokens --y token_hit_ratio --series policy --order opt,lru,fifo --label-map 'opt=OPT (Belady),lru=LRU,fifo=FIFO' --y-scale 100
#@data unbounded.dat series beyond-mooncake --x capacity_tokens --y unbounded_token_hit_ratio --y-scale 100
#@data paper.dat claims --ids beyond.mooncake.reuse --scale 100

stats D.'unbounded.dat' using 2 nooutput
UNB = STATS_max
stats D.'unbounded.dat' using 1 nooutput
XMAX = STATS_max
set xlabel 'cache capacity (tokens)'
set ylabel 'token hit ratio (%)'
set logscale x
set format x '10^{%T}'
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set key bottom right
plot D.'hit.dat' index 0 using 1:2 with linespoints lt 7 dt 2 title columnheader(1), \
     for [i=1:*] D.'hit.dat' index i using 1:2 with linespoints lt i title columnheader(1), \
     UNB with lines dt 3 lw 2 lc rgb '#555555' title 'unlimited capacity', \
     D.'paper.dat' using (XMAX):2 with points @PAPER title "Mooncake (FAST'25): reuse, unlimited capacity"

# common.gp — terminal and style shared by every figure. make-figures.sh runs
#   gnuplot -e "fmt='png'; out='OUT/x.png'; D='OUT/data/x/'" common.gp x.gp
# fmt: png (pngcairo, 800 x 500) or svg (same size, scalable); D: the figure's data directory.
if (!exists("fmt")) fmt = 'png'
if (!exists("D")) D = './'
if (fmt eq 'svg') {
  # svg draws text and points on another scale than pngcairo: these make both look alike
  set terminal svg size 800,500 dynamic enhanced font 'DejaVu Sans,13' background rgb 'white'
  PSF = 0.55
} else {
  set terminal pngcairo size 800,500 enhanced font 'DejaVu Sans,11' background rgb 'white'
  PSF = 1.0
}
if (exists("out")) set output out
set encoding utf8
set datafile missing 'nan'

# paper style: open top and right, light horizontal grid, no title
set border 3 lw 1
set tics nomirror out scale 0.6
set grid ytics lt 1 lw 1 lc rgb '#e4e4e4'
set key noautotitle samplen 2 spacing 1.1

# series colours: Okabe-Ito (colour-blind safe), one point type each so print in grey still reads
set linetype 1 lc rgb '#0072B2' lw 2 pt 7 ps 1.0*PSF
set linetype 2 lc rgb '#D55E00' lw 2 pt 5 ps 1.0*PSF
set linetype 3 lc rgb '#009E73' lw 2 pt 9 ps 1.1*PSF
set linetype 4 lc rgb '#CC79A7' lw 2 pt 11 ps 1.1*PSF
set linetype 5 lc rgb '#E69F00' lw 2 pt 13 ps 1.1*PSF
set linetype 6 lc rgb '#56B4E9' lw 2 pt 15 ps 1.1*PSF
set linetype 7 lc rgb '#000000' lw 2 pt 6 ps 1.0*PSF
set linetype cycle 7

# the paper's numbers: black open diamonds (error bars where the paper gives a range)
PAPER = sprintf("pt 12 ps %g lw 2 lc rgb 'black'", 1.8 * PSF)
# reference lines (e.g. recomputation)
REF = "dt 2 lw 2 lc rgb '#555555'"

# bars: solid fill with a thin dark outline
set style fill solid 0.85 border rgb '#333333'
set boxwidth 1.0 absolute

# x offset of series i (0-based) of n in a cluster of bars of total width w around integer x
bar_off(i, n, w) = (i - (n - 1) / 2.0) * w / n

# Multiplot panels placed by screen margins (a layout's panel would squeeze a shared key into its
# own width): panels fill [PL, PR] x [PB, PT] with gaps GX, GY; row 0 is the top row.
#   eval panel(column, columns, row, rows)
PL = 0.10; PR = 0.98; PB = 0.12; PT = 0.90; GX = 0.11; GY = 0.15
px0(c, nc) = PL + c * (PR - PL + GX) / nc
py1(r, nr) = PT - r * (PT - PB + GY) / nr
panel(c, nc, r, nr) = sprintf("set lmargin at screen %.4f; set rmargin at screen %.4f; set tmargin at screen %.4f; set bmargin at screen %.4f", px0(c, nc), px0(c, nc) + (PR - PL + GX) / nc - GX, py1(r, nr), py1(r, nr) - (PT - PB + GY) / nr + GY)
# a key across the top of the figure: @KEYONLY, then  plot keyentry with ... title '...', ...
KEYONLY = "unset logscale; set lmargin at screen 0; set rmargin at screen 1; set bmargin at screen 0; set tmargin at screen 1; unset border; unset tics; unset xlabel; unset ylabel; unset y2label; unset grid; unset label; unset arrow; unset object; set xrange [0:1]; set yrange [0:1]; set key at screen 0.5,0.995 center top horizontal maxrows 1 width 1"

#!/usr/bin/env bash
# Draws every figure whose data exists:
#   paper-figures/make-figures.sh TIDY_DIR OUT_DIR [CLAIMS]
# TIDY_DIR holds analysis/aggregate.py's tables (<sweep>.csv); OUT_DIR gets <figure>.png and
# <figure>.svg, and OUT_DIR/data/<figure>/ the plotted numbers (gnuplot data files). CLAIMS gives
# the papers' numbers: reproduce.py's claims.csv or experiments/claims.ini (the default; its
# 'paper' values are the ones claims.csv repeats).
#
# Each paper-figures/<figure>.gp declares what it needs in '#@' lines:
#   #@needs TABLE ...                 tidy tables (TIDY_DIR/TABLE.csv); any absent: the figure is
#                                     skipped with one line on stderr, never an error
#   #@data FILE series TABLE ARGS...  analysis/series.py TIDY_DIR/TABLE.csv ARGS -o DATA/FILE
#   #@data FILE claims ARGS...        analysis/claim_points.py CLAIMS ARGS -o DATA/FILE
#   #@data FILE caption CONFIG [TABLE [ARGS...]]
#                                     analysis/caption.py SRC/CONFIG TIDY_DIR/TABLE.csv ARGS: a
#                                     gnuplot file setting CAPTION (scale from KVLAB_SCALE)
# (ARGS are split like a shell command line: quote a regular expression.) Then the script is run
# twice, for PNG and SVG, after common.gp, with D = its data directory.
#
# Exit status: 0 when every figure with data was drawn (skipped ones included), 1 when a data
# extraction or gnuplot failed (its messages are shown; the other figures are still drawn),
# 2 on bad usage or when gnuplot or python3 is missing.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
me=make-figures

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
tidy="$1"
out="$2"
claims="${3:-$root/experiments/claims.ini}"
[ -d "$tidy" ] || { echo "$me: $tidy: no such directory (the tidy tables)" >&2; exit 2; }
[ -f "$claims" ] || { echo "$me: $claims: no such file (the claims)" >&2; exit 2; }
command -v gnuplot >/dev/null 2>&1 || {
  echo "$me: gnuplot not found (Debian: gnuplot-nox; scripts/setup-debian.sh installs it)" >&2
  exit 2
}
command -v python3 >/dev/null 2>&1 || { echo "$me: python3 not found" >&2; exit 2; }
case "$out$tidy$claims$here" in
  *\'*) echo "$me: paths must not contain a single quote (they are passed to gnuplot)" >&2
        exit 2 ;;
esac
mkdir -p "$out/data" || exit 2

drawn=()
skipped=()
failed=()

# draw FIGURE.gp: returns 0 drawn, 1 failed, 3 skipped
draw() {
  local gp="$1" name needs=() t missing=() data line file kind rest argv
  name="$(basename "$gp" .gp)"
  while read -r line; do
    # shellcheck disable=SC2206
    needs+=(${line#\#@needs})
  done < <(grep '^#@needs' "$gp")
  for t in "${needs[@]}"; do
    [ -f "$tidy/$t.csv" ] || missing+=("$t.csv")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$me: skipped $name: no ${missing[*]} in $tidy (its sweep did not run)" >&2
    return 3
  fi
  data="$out/data/$name"
  rm -rf "$data" && mkdir -p "$data" || return 1
  while read -r line; do
    rest="${line#\#@data}"
    read -r file kind rest <<<"$rest"
    if ! eval "argv=($rest)" 2>/dev/null; then
      echo "$me: $gp: cannot parse '#@data $file $kind $rest'" >&2
      return 1
    fi
    case "$kind" in
      series)
        [ ${#argv[@]} -ge 1 ] || { echo "$me: $gp: '#@data $file series' names no table" >&2; return 1; }
        python3 "$root/analysis/series.py" "$tidy/${argv[0]}.csv" "${argv[@]:1}" -o "$data/$file" ;;
      claims)
        python3 "$root/analysis/claim_points.py" "$claims" "${argv[@]}" -o "$data/$file" ;;
      caption)
        [ ${#argv[@]} -ge 1 ] || { echo "$me: $gp: '#@data $file caption' names no config" >&2; return 1; }
        python3 "$root/analysis/caption.py" "$root/${argv[0]}" \
          ${argv[1]:+"$tidy/${argv[1]}.csv"} "${argv[@]:2}" -o "$data/$file" ;;
      *)
        echo "$me: $gp: unknown data kind '$kind' in '#@data $file $kind' (series, claims, caption)" >&2
        false ;;
    esac || { echo "$me: FAILED $name: could not extract $file (above)" >&2; return 1; }
  done < <(grep '^#@data' "$gp")
  local f
  for f in png svg; do
    rm -f "$out/$name.$f"
    if ! gnuplot -e "fmt='$f'; out='$out/$name.$f'; D='$data/'" "$here/common.gp" "$gp"; then
      echo "$me: FAILED $name: gnuplot error drawing $name.$f (above)" >&2
      return 1
    fi
    if [ ! -s "$out/$name.$f" ]; then
      echo "$me: FAILED $name: gnuplot wrote no $name.$f" >&2
      return 1
    fi
  done
  return 0
}

for gp in "$here"/*.gp; do
  [ "$(basename "$gp")" = common.gp ] && continue
  grep -q '^#@needs' "$gp" || continue
  draw "$gp"
  case $? in
    0) drawn+=("$(basename "$gp" .gp)") ;;
    3) skipped+=("$(basename "$gp" .gp)") ;;
    *) failed+=("$(basename "$gp" .gp)") ;;
  esac
done

echo "$me: ${#drawn[@]} drawn, ${#skipped[@]} skipped (no data), ${#failed[@]} failed -> $out" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "$me: FAILED: ${failed[*]}" >&2
  exit 1
fi
exit 0

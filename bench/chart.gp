# bench/chart.gp -- the chart of bench/results/latest.png, drawn by
# bench/run.py: gnuplot -e "data='...'; out='...'; subtitle='...'" chart.gp
# Columns of data: n label local_cpu_us proxy_cpu_us local_over_us proxy_over_us
set terminal pngcairo size 1280,600 font "DejaVu Sans,10"
set output out
set multiplot layout 1,2 title "Proxy-Wasm (pwasm) vs Lua vs njs in nginx: worker CPU time per request (lower is better)\n{/*0.8 ".subtitle."}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -30 scale 0 font ",9" left offset -1,0
set key top left
set yrange [0:*]
set offsets 0,0,graph 0.1,0
set xzeroaxis lt -1
set bmargin 8
set title "CPU time per request (µs, best round)"
plot data using 3:xtic(2) title "nginx answers (return 200)" lc rgb "#4477aa", \
     '' using 4 title "proxied to a local upstream" lc rgb "#ee6677", \
     '' using ($0-1./6):3:(sprintf("%.1f",$3)) with labels offset 0,0.6 font ",8" notitle, \
     '' using ($0+1./6):4:(sprintf("%.1f",$4)) with labels offset 0,0.6 font ",8" notitle
set title "overhead over nginx alone (µs per request, best rounds)"
set yrange [*:*]
plot data every ::1 using 5:xtic(2) title "nginx answers (return 200)" lc rgb "#4477aa", \
     '' every ::1 using 6 title "proxied to a local upstream" lc rgb "#ee6677", \
     '' every ::1 using ($0-1./6):5:(sprintf("%.2f",$5)) with labels offset 0,0.6 font ",8" notitle, \
     '' every ::1 using ($0+1./6):6:(sprintf("%.2f",$6)) with labels offset 0,0.6 font ",8" notitle
unset multiplot

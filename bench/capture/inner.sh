#!/bin/sh
# Runs inside the benchmark's namespaces (see run.sh). $1 is the work dir.
set -eu
W=$1
M=$W/migrate
# Private, empty copies of the directories the services write to; the
# directory skeletons (owners, modes) are kept.
for d in /run /srv /var/spool/postfix /var/mail /var/lib/postfix /var/log; do
	(cd "$d" && find . -type d -print0 | tar --null --no-recursion -cf "$W/skel.tar" -T -)
	mount -t tmpfs -o mode=0755 bench "$d"
	tar -C "$d" -xpf "$W/skel.tar"
done
chgrp mail /var/mail && chmod 2775 /var/mail
mkdir -p /var/log/nginx /run/named
ip link set lo up

now() { date +%s.%N; }
since() { echo "$(now) $1" | awk '{printf "%.3f", $1-$2}'; }
size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN{printf "%.1f MB", b/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" -v p="${3:-2}" 'BEGIN{ if (b>0) printf "%." p "f", a/b; else print "-" }'; } # a b [decimals]

# tar --zstd of exactly the files in an archive's manifest.
same_list_tar() { # archive out
	"$M" --json archive list "$1" | sed -n 's/.*"path":"\([^"]*\)".*/\1/p' > "$W/list"
	t0=$(now)
	tar --zstd --no-recursion -cf "$2" -P -T "$W/list" 2>/dev/null || true
	echo "$(since "$t0")"
}

# Naive baseline: dpkg -L of the packages + ldd of each ELF + tar --zstd.
naive() { # out pkgs...
	out=$1; shift
	t0=$(now)
	dpkg -L "$@" 2>/dev/null | sort -u > "$W/naive.pkg"
	while read -r f; do
		[ -f "$f" ] || continue
		case "$f" in *.so|*.so.*) ;; *) [ -x "$f" ] || continue ;; esac
		ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/[^ ]*ld-linux/{print $1}'
	done < "$W/naive.pkg" | sort -u > "$W/naive.libs"
	cat "$W/naive.pkg" "$W/naive.libs" > "$W/naive"
	tar --zstd --no-recursion --dereference -cf "$out" -P -T "$W/naive" 2>/dev/null || true
	echo "$(since "$t0")"
}

# migrate capture into $3; prints its wall time. $1 names the log.
capture() { # log capture-args out
	t0=$(now)
	"$M" -v capture --from local $2 -o "$3" > /dev/null 2> "$W/$1.err" || { cat "$W/$1.err" >&2; return 1; }
	since "$t0"
}

# median of its arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# The capture as it runs by default (traced start-up) and with --trace off,
# which does what the naive baseline does not either: no tracing. Each is
# timed $ROUNDS times, the three interleaved (traced, off, naive, traced,
# …) so that none of them alone runs with cold caches or a busy neighbour;
# the medians are compared.
ROUNDS=${ROUNDS:-3}
bench() { # name capture-args naive-packages
	name=$1 args=$2 pkgs=$3
	tcs= tos= tns=
	for r in $(seq "$ROUNDS"); do
		tcs="$tcs $(capture "$name" "$args" "$W/$name.tar.zst")"
		tos="$tos $(capture "$name.off" "$args --trace off" "$W/$name.off.tar.zst")"
		tns="$tns $(naive "$W/$name.naive.tar.zst" $pkgs)"
	done
	tc=$(median $tcs) to=$(median $tos) tn=$(median $tns)
	printf '%-8s phases:' "$name"
	sed -n 's/.*msg="\{0,1\}\([a-z ]*\)"\{0,1\} .*took=\([0-9.a-zµ]*\).*/ \1 at \2;/p' "$W/$name.err" |
		sed 's/archive written at/archive written in/' | tr -d '\n'
	echo
	printf '%-8s rounds (s): traced%s | --trace off%s | naive%s\n' "$name" "$tcs" "$tos" "$tns"
	sc=$(size "$W/$name.tar.zst")
	so=$(size "$W/$name.off.tar.zst")
	tt=$(same_list_tar "$W/$name.tar.zst" "$W/$name.same.tar.zst")
	st=$(size "$W/$name.same.tar.zst")
	tto=$(same_list_tar "$W/$name.off.tar.zst" "$W/$name.off.same.tar.zst")
	sto=$(size "$W/$name.off.same.tar.zst")
	sn=$(size "$W/$name.naive.tar.zst")
	printf '%-8s migrate capture %6ss %10s | --trace off %6ss %10s | tar --zstd same list %6ss %10s | naive dpkg -L+ldd+tar %6ss %10s\n' \
		"$name" "$tc" "$(mb "$sc")" "$to" "$(mb "$so")" "$tt" "$(mb "$st")" "$tn" "$(mb "$sn")"
	printf '%-8s ratios: time vs naive %sx traced, %sx --trace off (target <= 1.5); size vs same-list tar.zst %sx traced, %sx --trace off (target <= 1.0); size vs naive %sx\n' \
		"$name" "$(ratio "$tc" "$tn")" "$(ratio "$to" "$tn")" "$(ratio "$sc" "$st" 4)" "$(ratio "$so" "$sto" 4)" "$(ratio "$sc" "$sn")"
	# Each round's capture against the naive run right after it: the pairs
	# share the machine's state of the moment, which the medians above mix.
	printf '%-8s paired: median of the rounds'"'"' own ratios %sx traced, %sx --trace off\n' \
		"$name" "$(paired "$tcs" "$tns")" "$(paired "$tos" "$tns")"
}

# paired prints the median of a_i/b_i over two lists of times.
paired() { # "a1 a2 ..." "b1 b2 ..."
	median $(printf '%s\n%s\n' "$1" "$2" | awk 'NR==1{n=split($0,a," ")} NR==2{split($0,b," "); for(i=1;i<=n;i++) if (b[i]>0) printf "%.2f ", a[i]/b[i]}')
}

wait_port() { for i in $(seq 300); do nc -z 127.0.0.1 "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

# SERVICES picks the services to measure (default: all three).
want() { case " ${SERVICES:-nginx bind postfix} " in *" $1 "*) return 0 ;; esac; return 1; }

# --- nginx ---
if want nginx; then
mkdir -p /srv/www /srv/conf
echo hello > /srv/www/index.html
cat > /srv/conf/nginx.conf <<'X'
user www-data;
worker_processes 2;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
events { worker_connections 256; }
http { include /etc/nginx/mime.types; access_log /var/log/nginx/access.log; server { listen 127.0.0.1:80; root /srv/www; } }
X
if command -v reprozip > /dev/null; then
	t0=$(now)
	reprozip trace -d "$W/rz" --overwrite sh -c 'nginx -c /srv/conf/nginx.conf; sleep 0.5; nginx -c /srv/conf/nginx.conf -s quit; sleep 0.3' > /dev/null 2>&1 || true
	trz=$(since "$t0")
	t0=$(now)
	reprozip pack -d "$W/rz" "$W/nginx.rpz" > /dev/null 2>&1 || true
	prz=$(since "$t0")
	srz=$(size "$W/nginx.rpz" 2>/dev/null || echo 0)
	printf 'nginx    reprozip trace %ss + pack %ss, %s\n' "$trz" "$prz" "$(mb "$srz")"
fi
nginx -c /srv/conf/nginx.conf -g 'daemon off;' & wait_port 80
bench nginx "--service nginx" "nginx nginx-common"
if [ -n "${trz:-}" ]; then
	printf 'nginx    ratio: reprozip trace+pack / migrate capture = %sx (target >= 10)\n' \
		"$(ratio "$(echo "$trz $prz" | awk '{print $1+$2}')" "$tc")"
fi

fi

# --- BIND 9 ---
if want bind; then
mkdir -p /srv/bind
cat > /srv/bind/named.conf <<'X'
options { directory "/srv/bind"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port 53 { 127.0.0.1; }; listen-on-v6 { none; }; recursion no; dnssec-validation no; };
zone "example.test" { type primary; file "example.test.db"; };
X
printf '$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.10\n' > /srv/bind/example.test.db
named -g -c /srv/bind/named.conf > "$W/named.log" 2>&1 & wait_port 53
bench bind "--service bind9" "bind9 bind9-libs"
fi

# --- Postfix ---
if want postfix; then
mkdir -p /srv/pf && cp -a /etc/postfix/. /srv/pf/
postfix -c /srv/pf start-fg > "$W/postfix.log" 2>&1 & wait_port 25
bench postfix "--service postfix" "postfix"
fi

#!/bin/sh
# The benchmark runs behind BENCHMARKS.md, in order (about 10 minutes on the 2-core machine).
# Run from the workspace root after `cargo build --release -p volley-gateway -p volley-bench`;
# text and JSON reports go to $OUT (default /tmp/bench). nats-server must be on PATH.
set -ex
B=target/release/volley-bench; G=target/release/volley-gateway; O=${OUT:-/tmp/bench}
mkdir -p "$O"
$B run --gateway $G --engines epoll,tokio --gateway-arg=--shards=1 --pin --scenario storm -n 19000 --inflight 1024 --runs 2 --json $O/storm.json > $O/storm.txt 2>&1
$B run --gateway $G --engines epoll,tokio --gateway-arg=--shards=1 --pin --client-cpus 0,1 --scenario storm -n 19000 --inflight 1024 --runs 2 --json $O/storm-both.json > $O/storm-both.txt 2>&1
$B run --gateway $G --engines epoll,tokio --gateway-arg=--shards=1 --pin --scenario fanout -n 10000 --rates 2,10,50,200,500 --size 256 --duration 5s --grace 5s --runs 2 --json $O/fanout.json > $O/fanout.txt 2>&1
$B run --gateway $G --engines epoll,tokio --gateway-arg=--shards=1 --pin --scenario per-user -n 10000 --user-rate 1000 --rates 10 --duration 5s --grace 5s --runs 2 --json $O/per-user.json > $O/per-user.txt 2>&1
$B run --gateway $G --engines epoll --gateways 3 --gateway-arg=--shards=1 --pin --scenario fanout -n 50000 --per-process 7000 --rates 2,10,40 --size 256 --duration 5s --grace 10s --runs 2 --json $O/three-gateways.json > $O/three-gateways.txt 2>&1
for s in 1 2; do
$B run --gateway $G --engines epoll --gateway-arg=--shards=$s --pin --server-cpus 0,1 --scenario fanout -n 10000 --rates 2,10 --size 256 --duration 5s --grace 5s --runs 2 --json $O/shards-$s.json > $O/shards-$s.txt 2>&1
done
# issue 13: Volley beside the fan-out-only limit reference, interleaved in each run
$B run --gateway $G --engines reference,epoll --gateway-arg=--shards=1 --pin --scenario fanout -n 10000 --rates 2,5,50,200 --size 256 --duration 5s --grace 5s --runs 2 --json $O/limit.json > $O/limit.txt 2>&1
echo finished

"""``python -m cpm.bench CONFIG...``: the speed benchmark (`cpm.bench.speed`)."""

from cpm.bench.speed import main

main()

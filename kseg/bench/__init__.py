"""Benchmarks: throughput and memory against this machine's own conv ceiling (`kseg bench`)."""

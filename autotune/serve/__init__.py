"""Serving as it will run: a deployment's traffic, its server started for real, and clients that load it.

``traffic`` reads the user's own prompts (plain text or JSONL, chat messages allowed) and sets a held-out part
aside for confirming; ``server`` starts an inference server on loopback and watches its memory; ``loadgen``
drives it with a closed loop of concurrent clients over HTTP (a fresh prompt per request, bounded in count and
time) and reduces what each request saw to throughput, time to first token and inter-token latencies, each
percentile with the number of requests it rests on.
"""

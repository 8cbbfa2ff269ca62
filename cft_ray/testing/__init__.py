"""Stand-ins for what cannot exist on a laptop or in CI, speaking the real protocols over real sockets.

``teacher_server``: an OpenAI-compatible teacher on loopback with deterministic critiques and
injectable faults (rate limits, 5xx, hangs, dropped connections, malformed JSON). Production code
imports nothing from here at module level; the teacher stage starts this server only when
``teacher.base_url`` is unset (the offline smoke run).
"""

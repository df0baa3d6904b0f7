"""Rules: pure logic over per-user and per-account state (no I/O, no clocks)."""

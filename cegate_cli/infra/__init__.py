"""Plumbing every layer shares: atomic writes, safe document loading, typed record fields, threads, progress,
capacity limits, the install check, torchrun, counts in words."""

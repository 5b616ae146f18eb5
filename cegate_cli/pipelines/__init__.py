"""What the commands run, end to end: adapt, predict and evaluate a run, the demo, and their results as JSON."""

"""What a run looks like to a reader: inspect's summary, the HTML report, its charts, previews and pictures."""

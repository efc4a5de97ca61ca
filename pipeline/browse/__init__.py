"""Looking at runs: `docintel runs` and `show` (runs), and `docintel review`'s HTML page (review)."""

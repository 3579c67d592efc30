"""One module per family of rules; each rule is a pure function (facts, thresholds) -> list."""

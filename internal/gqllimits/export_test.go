package gqllimits

// CostNeutral exposes costNeutral to the external tests.
var CostNeutral = costNeutral

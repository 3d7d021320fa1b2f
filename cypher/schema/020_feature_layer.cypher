// Index: features are filtered by layer.
// params: none
CREATE INDEX feature_layer IF NOT EXISTS FOR (n:Feature) ON (n.layer)

// Index: features are filtered by transcoder set.
// params: none
CREATE INDEX feature_transcoder_set IF NOT EXISTS FOR (n:Feature) ON (n.transcoder_set)

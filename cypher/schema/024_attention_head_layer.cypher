// Index: heads are filtered by layer.
// params: none
CREATE INDEX attention_head_layer IF NOT EXISTS FOR (n:AttentionHead) ON (n.layer)

// Uniqueness of AttentionHead ids (<model hash16>:<layer>:<head>).
// params: none
CREATE CONSTRAINT attention_head_id IF NOT EXISTS FOR (n:AttentionHead) REQUIRE n.id IS UNIQUE

// Uniqueness of Feature ids (deterministic: transcoder set / layer / index).
// params: none
CREATE CONSTRAINT feature_id IF NOT EXISTS FOR (f:Feature) REQUIRE f.id IS UNIQUE

// Uniqueness of Feature ids (<transcoder hash16>:<layer>:<index>).
// params: none
CREATE CONSTRAINT feature_id IF NOT EXISTS FOR (n:Feature) REQUIRE n.id IS UNIQUE

-- An FAQ's second sentence vector: its question read with its answer, so a
-- customer asking in the answer's words is matched too. Written with the
-- question's vector (passages.embedding) by the same model, or not at all.
ALTER TABLE passages ADD COLUMN pair_embedding bytea;

-- Sentence vectors of FAQ questions (little-endian f32, unit length), and
-- which model made them: vectors from different weights are not comparable,
-- so a version is only searched by vector with the model that trained it.
ALTER TABLE passages ADD COLUMN embedding bytea;
ALTER TABLE training_jobs ADD COLUMN embedding_model text;

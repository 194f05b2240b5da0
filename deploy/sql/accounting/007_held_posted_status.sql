-- 007: a held document can also leave the queue by itself ('posted': the missing rate, stock or
-- original document arrived), as the posting stage's held topic says (schemas/held_document).
ALTER TABLE held_documents DROP CONSTRAINT held_documents_action_check;
ALTER TABLE held_documents ADD CONSTRAINT held_documents_action_check
    CHECK (action IN ('held', 'released', 'posted'));

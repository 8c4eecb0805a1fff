DROP TRIGGER IF EXISTS notifications_person_changes_update ON notifications;
DROP TRIGGER IF EXISTS notifications_person_changes_insert ON notifications;
DROP FUNCTION IF EXISTS person_changes_on_update();
DROP FUNCTION IF EXISTS person_changes_on_insert();
DROP TRIGGER IF EXISTS person_change_seqs_forget ON person_change_seqs;
DROP FUNCTION IF EXISTS person_changes_forget();
DROP TABLE IF EXISTS person_changes;
DROP TABLE IF EXISTS person_change_seqs;

"""Stories: what an article says (entities, meaning) and which story it belongs to (grouping). Empty on
purpose: a task imports only the modules it uses."""

"""The Faust stream application: topics, tables and agents. Agents decode, call the pure
domain, and emit; they hold no business rules of their own."""

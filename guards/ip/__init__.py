"""The intellectual-property guard: verbatim reproduction of protected works, and licences in code."""

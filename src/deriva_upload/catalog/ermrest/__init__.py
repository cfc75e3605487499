"""The embedded catalog's ERMrest: URL grammar (``urlparse``), types, model store
(``model``), SQL translation (``sql``), storage (``store``), data operations (``data``)
and the HTTP handlers (``api``).
"""

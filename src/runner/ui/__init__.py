"""What both faces share: selections read from arguments, targets as JSON, tables, report and
summary text. May import everything below the faces (model to engines), never a face."""

<?php
// Every other path of the file-routed docroot ends here.
require __DIR__ . '/../record.php';
tok_zoo_record('docroot');

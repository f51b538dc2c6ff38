<?php
// php -S 127.0.0.1:PORT -t docroot: the built-in server runs this file for
// /checkout, /checkout/, /checkout/index.php, /checkout/index.php/x and
// /checkout/anything (a missing file falls back to the nearest index.php
// up the path), for every method.
require __DIR__ . '/../../record.php';
tok_zoo_record('docroot');

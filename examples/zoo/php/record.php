<?php
// The recording handler of tok's framework zoo, shared by the
// router script (router.php) and the file-routed docroot (docroot/): it
// answers with JSON holding everything PHP parsed from the request — the
// body read as JSON whatever its Content-Type (json_decode of php://input,
// as many apps do), $_POST (and parse_str of the body, as apps read PUT forms), $_FILES with their contents, $_GET, $_COOKIE,
// $_REQUEST, the headers, the path and the method. The zoo test searches the
// answer for card numbers.

function tok_zoo_record(string $mode): void
{
    $files = [];
    foreach ($_FILES as $name => $f) {
        $files[$name] = tok_zoo_file($f);
    }
    $raw = file_get_contents('php://input');
    // PHP fills $_POST for POST only; apps read PUT and PATCH forms (and
    // typeless bodies) with parse_str, as Laravel and Symfony do.
    parse_str((string)$raw, $inputForm);
    $answer = [
        'framework' => 'php-' . $mode,
        'script' => $_SERVER['SCRIPT_NAME'] ?? null,
        'method' => $_SERVER['REQUEST_METHOD'] ?? null,
        'uri' => $_SERVER['REQUEST_URI'] ?? null,
        'path_info' => $_SERVER['PATH_INFO'] ?? null,
        'query_string' => $_SERVER['QUERY_STRING'] ?? null,
        'get' => $_GET,
        'post' => $_POST,
        'request' => $_REQUEST,
        'input_form' => $inputForm,
        'cookies' => $_COOKIE,
        'files' => $files,
        'json' => json_decode($raw, true),
        'json_bigint' => json_decode($raw, true, 512, JSON_BIGINT_AS_STRING),
        'headers' => function_exists('getallheaders') ? getallheaders() : [],
    ];
    header('Content-Type: application/json');
    header('X-Zoo-App: php-' . $mode); // the app answered, not tok nor the server
    echo json_encode($answer, JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
}

// tok_zoo_file reads an upload's contents, recursing into name[] arrays,
// whose $_FILES entries hold arrays in every key.
function tok_zoo_file(array $f): array
{
    if (is_array($f['tmp_name'])) {
        $out = [];
        foreach ($f['tmp_name'] as $k => $_) {
            $out[$k] = tok_zoo_file([
                'name' => $f['name'][$k], 'type' => $f['type'][$k],
                'tmp_name' => $f['tmp_name'][$k], 'error' => $f['error'][$k],
            ]);
        }
        return $out;
    }
    $content = ($f['tmp_name'] !== '' && is_readable($f['tmp_name'])) ? file_get_contents($f['tmp_name']) : null;
    return ['name' => $f['name'], 'type' => $f['type'], 'error' => $f['error'], 'content' => $content];
}

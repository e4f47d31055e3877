#!/bin/sh
# Debian's /usr/bin/activemq, without its instance options (a fixed 512 MB heap) and its `su`:
# the broker in the foreground, its data fresh in the container.
exec java -Xms64M -Xmx256M -XX:+UseSerialGC -Djava.awt.headless=true \
    -Djava.io.tmpdir=/srv/activemq/tmp \
    --add-reads=java.xml=java.logging \
    --add-opens java.base/java.security=ALL-UNNAMED \
    --add-opens java.base/java.net=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    --add-opens java.naming/javax.naming.spi=ALL-UNNAMED \
    --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED \
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED \
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED \
    -Dactivemq.classpath=/srv/activemq/conf \
    -Dactivemq.home=/usr/share/activemq \
    -Dactivemq.base=/srv/activemq \
    -Dactivemq.conf=/srv/activemq/conf \
    -Dactivemq.data=/srv/activemq/data \
    -jar /usr/share/activemq/bin/activemq.jar start xbean:file:/srv/activemq/conf/activemq.xml
